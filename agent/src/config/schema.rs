//! The configuration's sections and keys, read from the raw structs
//! themselves: serde hands every `deserialize_struct` call the struct's
//! field names, so a deserializer that only records those names lists
//! exactly the keys the TOML file may hold. Nothing here repeats a key by
//! hand; environment variables find their section here, and the key
//! coverage test walks every key from here.

use serde::Deserialize;
use serde::de::value::{BorrowedStrDeserializer, Error};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::RawConfig;

/// One `[section]` of the file and the keys it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    pub name: &'static str,
    pub keys: &'static [&'static str],
}

/// Every section of [`RawConfig`] with its keys, in declaration order.
pub fn sections() -> Vec<Section> {
    // The walk of `RawConfig` cannot fail (`the_raw_config_walks_cleanly`
    // proves it); were it to, the sections found up to then are returned.
    match walk::<RawConfig>() {
        Ok(sections) | Err((sections, _)) => sections,
    }
}

/// The sections of any two-level raw struct `T`; on error, also the
/// sections found before it.
pub(super) fn walk<'de, T: Deserialize<'de>>() -> Result<Vec<Section>, (Vec<Section>, Error)> {
    let mut found = Vec::new();
    match T::deserialize(Root {
        sections: &mut found,
    }) {
        Ok(_) => Ok(found),
        Err(err) => Err((found, err)),
    }
}

/// Every section's name, for addressing keys from outside a file.
pub fn section_names() -> Vec<&'static str> {
    sections().into_iter().map(|section| section.name).collect()
}

/// Deserializes the top-level struct: every field is a section, fed to
/// [`SectionWalker`] so each section struct reports its own fields.
struct Root<'a> {
    sections: &'a mut Vec<Section>,
}

impl<'de> Deserializer<'de> for Root<'_> {
    type Error = Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(SectionMap {
            fields,
            next: 0,
            sections: self.sections,
        })
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("the configuration must be a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The top-level table: each section name once, its value a section.
struct SectionMap<'a> {
    fields: &'static [&'static str],
    next: usize,
    sections: &'a mut Vec<Section>,
}

impl<'de> MapAccess<'de> for SectionMap<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(name) = self.fields.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize(BorrowedStrDeserializer::new(name))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let name = self.fields.get(self.next).copied().unwrap_or_default();
        self.next += 1;
        seed.deserialize(SectionWalker {
            name,
            sections: self.sections,
        })
    }
}

/// Deserializes one section: records its fields, then gives it an empty
/// table, which succeeds only when every key is optional.
struct SectionWalker<'a> {
    name: &'static str,
    sections: &'a mut Vec<Section>,
}

impl<'de> Deserializer<'de> for SectionWalker<'_> {
    type Error = Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.sections.push(Section {
            name: self.name,
            keys: fields,
        });
        visitor.visit_map(de::value::MapDeserializer::new(std::iter::empty::<(
            &str,
            &str,
        )>()))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(de::Error::custom(format_args!(
            "section {} must be a table of keys",
            self.name
        )))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(dead_code)] // only deserialized, never read
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        #[serde(default)]
        first: DemoFirst,
        #[serde(default)]
        second: DemoSecond,
    }

    #[allow(dead_code)] // only deserialized, never read
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct DemoFirst {
        a: Option<u32>,
        #[serde(rename = "b-key")]
        b: Option<Vec<String>>,
    }

    #[allow(dead_code)] // only deserialized, never read
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct DemoSecond {
        c: Option<String>,
    }

    #[allow(dead_code)] // only deserialized, never read
    #[derive(Debug, Default, Deserialize)]
    struct Required {
        #[serde(default)]
        only: DemoRequired,
    }

    #[allow(dead_code)] // only deserialized, never read
    #[derive(Debug, Default, Deserialize)]
    struct DemoRequired {
        must: u32,
    }

    #[test]
    fn the_walk_lists_sections_and_keys_as_serde_names_them() {
        let sections = walk::<Demo>().unwrap();
        assert_eq!(
            sections,
            [
                Section {
                    name: "first",
                    keys: &["a", "b-key"]
                },
                Section {
                    name: "second",
                    keys: &["c"]
                },
            ]
        );
    }

    #[test]
    fn a_required_key_fails_the_walk() {
        let (found, err) = walk::<Required>().unwrap_err();
        assert_eq!(found.len(), 1, "the section itself was seen");
        assert!(err.to_string().contains("must"), "{err}");
    }

    #[test]
    fn the_raw_config_walks_cleanly() {
        let sections = walk::<RawConfig>().unwrap();
        assert_eq!(sections, super::sections());
        assert!(sections.len() >= 5, "{sections:?}");
        assert!(sections.iter().all(|section| !section.keys.is_empty()));
        assert!(section_names().contains(&"control_plane"));
    }
}
