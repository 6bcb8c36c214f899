//! Which board this is, from the files Linux exposes, read below a root path
//! so tests run on fixture trees (`hw/fixtures/boards/*`).

use std::path::Path;

use serde::Serialize;

/// Board families that change what the agent does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BoardFamily {
    /// Raspberry Pi up to 4, Zero 2 W, CM4: hardware H.264 via `v4l2h264enc`.
    RaspberryPi,
    /// Raspberry Pi 5: no H.264 encoder block at all.
    RaspberryPi5,
    /// NVIDIA Jetson: `nvv4l2h264enc`.
    Jetson,
    /// Rockchip SoCs: `mpph264enc`.
    Rockchip,
    /// A PC: VA-API where the GPU has it.
    X86,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Board {
    pub family: BoardFamily,
    /// The model string as the firmware reports it.
    pub model: String,
}

fn read_trimmed(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    // Device-tree strings end in NUL; compatible lists are NUL-separated.
    let text = String::from_utf8_lossy(&bytes)
        .replace('\0', "\n")
        .trim()
        .to_owned();
    (!text.is_empty()).then_some(text)
}

/// Detects the board below `root` (`/` on a device).
pub fn detect(root: &Path) -> Board {
    let dt_model = read_trimmed(&root.join("proc/device-tree/model"))
        .or_else(|| read_trimmed(&root.join("sys/firmware/devicetree/base/model")));
    let compatible = read_trimmed(&root.join("proc/device-tree/compatible"))
        .or_else(|| read_trimmed(&root.join("sys/firmware/devicetree/base/compatible")))
        .unwrap_or_default();
    if let Some(model) = dt_model {
        let family = if model.starts_with("Raspberry Pi 5") || compatible.contains("brcm,bcm2712") {
            BoardFamily::RaspberryPi5
        } else if model.starts_with("Raspberry Pi") || compatible.contains("brcm,bcm2") {
            BoardFamily::RaspberryPi
        } else if model.contains("Jetson") || compatible.contains("nvidia,tegra") {
            BoardFamily::Jetson
        } else if compatible.contains("rockchip,") {
            BoardFamily::Rockchip
        } else {
            BoardFamily::Unknown
        };
        return Board { family, model };
    }
    // No device tree: a PC reports itself through DMI.
    let vendor = read_trimmed(&root.join("sys/class/dmi/id/sys_vendor"));
    let product = read_trimmed(&root.join("sys/class/dmi/id/product_name"));
    let cpuinfo = read_trimmed(&root.join("proc/cpuinfo")).unwrap_or_default();
    let x86 =
        cpuinfo.contains("GenuineIntel") || cpuinfo.contains("AuthenticAMD") || vendor.is_some();
    let model = [vendor, product]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    Board {
        family: if x86 {
            BoardFamily::X86
        } else {
            BoardFamily::Unknown
        },
        model: if model.is_empty() {
            "unknown".into()
        } else {
            model
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Board {
        detect(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/boards")
                .join(name),
        )
    }

    #[test]
    fn fixture_boards_are_recognised() {
        let cases = [
            (
                "pi3",
                BoardFamily::RaspberryPi,
                "Raspberry Pi 3 Model B Plus Rev 1.3",
            ),
            (
                "pi4",
                BoardFamily::RaspberryPi,
                "Raspberry Pi 4 Model B Rev 1.4",
            ),
            (
                "pi5",
                BoardFamily::RaspberryPi5,
                "Raspberry Pi 5 Model B Rev 1.0",
            ),
            (
                "pi-zero-2w",
                BoardFamily::RaspberryPi,
                "Raspberry Pi Zero 2 W Rev 1.0",
            ),
            (
                "jetson-orin-nano",
                BoardFamily::Jetson,
                "NVIDIA Jetson Orin Nano Developer Kit",
            ),
            ("rock5b", BoardFamily::Rockchip, "Radxa ROCK 5B"),
            (
                "x86-nuc",
                BoardFamily::X86,
                "Intel(R) Client Systems NUC11TNHi5",
            ),
        ];
        for (name, family, model) in cases {
            let board = fixture(name);
            assert_eq!(board.family, family, "{name}");
            assert_eq!(board.model, model, "{name}");
        }
    }

    #[test]
    fn an_empty_tree_is_unknown() {
        let board = detect(Path::new("/nonexistent-root-for-test"));
        assert_eq!(board.family, BoardFamily::Unknown);
        assert_eq!(board.model, "unknown");
    }
}
