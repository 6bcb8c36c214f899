//! Building blocks shared by every pipeline the agent makes: elements by
//! factory name, properties from the plan's strings, and the plan's linear
//! chain turned into linked elements. Errors name the element and property.

use gst::glib;
use gst::prelude::*;

use hw::Step;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("GStreamer element {0} is missing; install the package that provides it")]
    MissingElement(String),
    #[error("element {element} has no property {property}")]
    NoProperty { element: String, property: String },
    #[error("element {element}: {value:?} is not a valid value for {property}")]
    BadProperty {
        element: String,
        property: String,
        value: String,
    },
    #[error("invalid caps {0:?}")]
    BadCaps(String),
    #[error("cannot link {0} to {1}")]
    Link(String, String),
    #[error("pipeline refused to start: {0}")]
    Start(String),
    #[error("invalid SDP: {0}")]
    BadSdp(String),
    #[error("GStreamer: {0}")]
    Glib(String),
}

pub(crate) fn set_str_property(
    element: &gst::Element,
    name: &str,
    value: &str,
) -> Result<(), MediaError> {
    let factory = element
        .factory()
        .map(|factory| factory.name().to_string())
        .unwrap_or_default();
    let pspec = element
        .find_property(name)
        .ok_or_else(|| MediaError::NoProperty {
            element: factory.clone(),
            property: name.into(),
        })?;
    let value = glib::Value::deserialize(value, pspec.value_type()).map_err(|_| {
        MediaError::BadProperty {
            element: factory,
            property: name.into(),
            value: value.into(),
        }
    })?;
    element.set_property_from_value(name, &value);
    Ok(())
}

pub(crate) fn make(factory: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| MediaError::MissingElement(factory.into()))
}

/// Makes the elements of `steps` (capsfilters for caps), not yet linked.
pub(crate) fn build_chain(steps: &[Step]) -> Result<Vec<gst::Element>, MediaError> {
    let mut chain = Vec::new();
    for step in steps {
        let element = match step {
            Step::Element(element_plan) => {
                let element = make(&element_plan.factory)?;
                for (key, value) in &element_plan.properties {
                    set_str_property(&element, key, value)?;
                }
                element
            }
            Step::Caps(caps) => {
                let caps: gst::Caps = caps
                    .parse()
                    .map_err(|_| MediaError::BadCaps(caps.clone()))?;
                gst::ElementFactory::make("capsfilter")
                    .property("caps", &caps)
                    .build()
                    .map_err(|_| MediaError::MissingElement("capsfilter".into()))?
            }
        };
        chain.push(element);
    }
    Ok(chain)
}

pub(crate) fn link_chain(chain: &[gst::Element]) -> Result<(), MediaError> {
    for pair in chain.windows(2) {
        pair[0].link(&pair[1]).map_err(|_| {
            MediaError::Link(pair[0].name().to_string(), pair[1].name().to_string())
        })?;
    }
    Ok(())
}
