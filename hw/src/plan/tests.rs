//! Plans for every board, camera kind and encoder the agent knows.
use super::*;
use crate::board::detect;
use crate::camera::{Camera, CameraApi, CameraMode, PixelKind};
use std::path::Path;

const SETTINGS: EncoderSettings = EncoderSettings {
    bitrate_kbps: 2000,
    keyframe_interval: 60,
};

fn spec(width: u32, height: u32) -> CaptureSpec {
    CaptureSpec {
        width,
        height,
        framerate: 30,
    }
}

fn board(name: &str) -> BoardFamily {
    detect(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/boards")
            .join(name),
    )
    .family
}

fn uvc(device: &str, modes: Vec<CameraMode>) -> Camera {
    Camera {
        api: CameraApi::V4l2,
        name: "USB Camera".into(),
        device: Some(device.into()),
        camera_id: None,
        driver: Some("uvcvideo".into()),
        bus: Some("usb-1".into()),
        modes,
    }
}

fn mode(pixels: PixelKind, width: u32, height: u32) -> CameraMode {
    CameraMode {
        pixels,
        width,
        height,
        framerates: vec![30, 15],
    }
}

fn pi_camera() -> Vec<Camera> {
    vec![
        // The sensor's V4L2 node (unicam): Bayer only.
        Camera {
            api: CameraApi::V4l2,
            name: "unicam".into(),
            device: Some("/dev/video0".into()),
            camera_id: None,
            driver: Some("unicam".into()),
            bus: Some("platform:fe801000.csi".into()),
            modes: vec![mode(PixelKind::Bayer, 1920, 1080)],
        },
        Camera {
            api: CameraApi::Libcamera,
            name: "imx708".into(),
            device: None,
            camera_id: Some("/base/soc/i2c0mux/i2c@1/imx708@1a".into()),
            driver: None,
            bus: None,
            modes: vec![
                mode(PixelKind::Raw("NV12".into()), 1280, 720),
                mode(PixelKind::Raw("NV12".into()), 1920, 1080),
            ],
        },
    ]
}

fn plan(
    source: SourceKind,
    capture: CaptureSpec,
    encoder: EncoderChoice,
    board: BoardFamily,
    cameras: &[Camera],
    available: &[&str],
) -> Result<PipelinePlan, PlanError> {
    PipelinePlan::build(
        PlanInput {
            source: &source,
            capture,
            encoder,
            settings: SETTINGS,
            board,
            cameras,
        },
        |name| available.contains(&name),
    )
}

const EVERYTHING: &[&str] = &[
    "v4l2h264enc",
    "nvv4l2h264enc",
    "mpph264enc",
    "vah264enc",
    "x264enc",
    "openh264enc",
    "v4l2jpegdec",
    "nvjpegdec",
    "mppjpegdec",
    "jpegdec",
];

fn factories(plan: &PipelinePlan) -> Vec<&str> {
    plan.factories().collect()
}

#[test]
fn test_source_with_x264_is_a_complete_chain() {
    let plan = plan(
        SourceKind::Test,
        spec(640, 480),
        EncoderChoice::Auto,
        BoardFamily::X86,
        &[],
        &["x264enc", "openh264enc"],
    )
    .unwrap();
    assert_eq!(plan.encoder, Some(EncoderKind::X264Enc));
    assert_eq!(
        factories(&plan),
        [
            "videotestsrc",
            "queue",
            "videoscale",
            "videorate",
            "videoconvert",
            "x264enc",
            "h264parse",
            "rtph264pay"
        ]
    );
    let text = plan.to_string();
    assert!(text.starts_with("videotestsrc is-live=true"), "{text}");
    assert!(text.contains("width=(int)640,height=(int)480"), "{text}");
    assert!(
        text.contains("profile=(string)constrained-baseline"),
        "{text}"
    );
    assert!(text.ends_with("! webrtcbin"), "{text}");
    // The controller's adaptation point starts at the capture's size
    // and rate; TWCC is offered on every packet.
    let adapt = plan.adapt.expect("an encoded plan has an adaptation point");
    assert_eq!(plan.steps[adapt], Step::Caps(adapt_caps(640, 480, 30)));
    assert!(
        text.contains(&format!("extmap-1=(string){TWCC_EXTENSION_URI}")),
        "{text}"
    );
}

#[test]
fn pi4_with_a_csi_camera_uses_libcamera_and_the_hardware_encoder() {
    let plan = plan(
        SourceKind::Auto,
        spec(1280, 720),
        EncoderChoice::Auto,
        board("pi4"),
        &pi_camera(),
        EVERYTHING,
    )
    .unwrap();
    assert_eq!(plan.encoder, Some(EncoderKind::V4l2H264Enc));
    assert_eq!(factories(&plan)[0], "libcamerasrc");
    let text = plan.to_string();
    assert!(
        text.contains("camera-name=/base/soc/i2c0mux/i2c@1/imx708@1a"),
        "{text}"
    );
    assert!(text.contains("format=(string)NV12"), "{text}");
    assert!(text.contains("level=(string)3.1"), "{text}");
}

#[test]
fn pi_zero_2w_and_pi3_pick_the_hardware_encoder_too() {
    for name in ["pi-zero-2w", "pi3"] {
        let plan = plan(
            SourceKind::Auto,
            spec(1280, 720),
            EncoderChoice::Auto,
            board(name),
            &pi_camera(),
            EVERYTHING,
        )
        .unwrap();
        assert_eq!(plan.encoder, Some(EncoderKind::V4l2H264Enc), "{name}");
    }
}

#[test]
fn pi5_with_a_usb_webcam_encodes_in_software_and_decodes_mjpeg() {
    let camera = uvc(
        "/dev/video0",
        vec![
            mode(PixelKind::Raw("YUY2".into()), 640, 480),
            mode(PixelKind::Mjpeg, 1280, 720),
        ],
    );
    let plan = plan(
        SourceKind::Auto,
        spec(1280, 720),
        EncoderChoice::Auto,
        board("pi5"),
        &[camera],
        EVERYTHING,
    )
    .unwrap();
    assert_eq!(plan.encoder, Some(EncoderKind::X264Enc));
    assert_eq!(
        factories(&plan),
        [
            "v4l2src",
            "jpegdec",
            "queue",
            "videoscale",
            "videorate",
            "videoconvert",
            "x264enc",
            "h264parse",
            "rtph264pay"
        ]
    );
    assert!(plan.to_string().contains("image/jpeg,width=(int)1280"));
}

#[test]
fn a_pi4_decodes_mjpeg_in_hardware() {
    let camera = uvc("/dev/video1", vec![mode(PixelKind::Mjpeg, 1280, 720)]);
    let plan = plan(
        SourceKind::V4l2 {
            device: "/dev/video1".into(),
        },
        spec(1280, 720),
        EncoderChoice::Auto,
        board("pi4"),
        &[camera],
        EVERYTHING,
    )
    .unwrap();
    assert!(factories(&plan).contains(&"v4l2jpegdec"));
}

#[test]
fn jetson_uses_nvvidconv_and_its_encoder() {
    let camera = uvc(
        "/dev/video0",
        vec![mode(PixelKind::Raw("YUY2".into()), 1920, 1080)],
    );
    let plan = plan(
        SourceKind::Auto,
        spec(1920, 1080),
        EncoderChoice::Auto,
        board("jetson-orin-nano"),
        &[camera],
        EVERYTHING,
    )
    .unwrap();
    assert_eq!(plan.encoder, Some(EncoderKind::NvV4l2H264Enc));
    assert_eq!(
        factories(&plan),
        [
            "v4l2src",
            "queue",
            "videoscale",
            "videorate",
            "nvvidconv",
            "nvv4l2h264enc",
            "h264parse",
            "rtph264pay"
        ]
    );
    assert!(plan.to_string().contains("memory:NVMM"));
}

#[test]
fn rockchip_uses_mpp() {
    let camera = uvc(
        "/dev/video0",
        vec![mode(PixelKind::Raw("NV12".into()), 1280, 720)],
    );
    let plan = plan(
        SourceKind::Auto,
        spec(1280, 720),
        EncoderChoice::Auto,
        board("rock5b"),
        &[camera],
        EVERYTHING,
    )
    .unwrap();
    assert_eq!(plan.encoder, Some(EncoderKind::MppH264Enc));
    assert!(plan.to_string().contains("header-mode=each-idr"));
}

#[test]
fn x86_prefers_va_then_software() {
    let camera = uvc(
        "/dev/video0",
        vec![mode(PixelKind::Raw("YUY2".into()), 1280, 720)],
    );
    let cameras = [camera];
    let with_va = plan(
        SourceKind::Auto,
        spec(1280, 720),
        EncoderChoice::Auto,
        board("x86-nuc"),
        &cameras,
        EVERYTHING,
    )
    .unwrap();
    assert_eq!(with_va.encoder, Some(EncoderKind::VaH264Enc));
    let without = plan(
        SourceKind::Auto,
        spec(1280, 720),
        EncoderChoice::Auto,
        board("x86-nuc"),
        &cameras,
        &["x264enc"],
    )
    .unwrap();
    assert_eq!(without.encoder, Some(EncoderKind::X264Enc));
    assert!(
        without
            .reasons
            .iter()
            .any(|reason| reason.contains("software")),
        "{:?}",
        without.reasons
    );
}

#[test]
fn a_camera_that_gives_h264_is_passed_through() {
    let camera = uvc(
        "/dev/video0",
        vec![
            mode(PixelKind::H264, 1920, 1080),
            mode(PixelKind::Raw("YUY2".into()), 640, 480),
        ],
    );
    let cameras = [camera];
    let plan1 = plan(
        SourceKind::Auto,
        spec(1920, 1080),
        EncoderChoice::Auto,
        BoardFamily::X86,
        &cameras,
        EVERYTHING,
    )
    .unwrap();
    assert_eq!(plan1.encoder, None);
    assert_eq!(
        factories(&plan1),
        ["v4l2src", "queue", "h264parse", "rtph264pay"]
    );
    // Nothing is encoded here, so there is nothing to adapt.
    assert_eq!(plan1.adapt, None);
    let explicit = plan(
        SourceKind::Auto,
        spec(1920, 1080),
        EncoderChoice::Passthrough,
        BoardFamily::X86,
        &cameras,
        EVERYTHING,
    )
    .unwrap();
    assert_eq!(explicit.encoder, None);
    let err = plan(
        SourceKind::Auto,
        spec(640, 480),
        EncoderChoice::Passthrough,
        BoardFamily::X86,
        &cameras,
        EVERYTHING,
    )
    .unwrap_err();
    assert!(matches!(err, PlanError::NoPassthrough { .. }), "{err}");
}

#[test]
fn an_unsupported_size_names_what_the_camera_offers() {
    let camera = uvc(
        "/dev/video0",
        vec![mode(PixelKind::Raw("YUY2".into()), 640, 480)],
    );
    let err = plan(
        SourceKind::Auto,
        spec(1280, 720),
        EncoderChoice::Auto,
        BoardFamily::X86,
        &[camera],
        EVERYTHING,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("1280x720@30"), "{text}");
    assert!(text.contains("640x480 YUY2"), "{text}");
}

#[test]
fn auto_without_a_usable_camera_is_a_clear_error() {
    let err = plan(
        SourceKind::Auto,
        spec(1280, 720),
        EncoderChoice::Auto,
        BoardFamily::X86,
        &[],
        EVERYTHING,
    )
    .unwrap_err();
    assert!(err.to_string().contains("no usable camera"), "{err}");
    let bayer_only = &pi_camera()[..1];
    let err = plan(
        SourceKind::Auto,
        spec(1920, 1080),
        EncoderChoice::Auto,
        board("pi4"),
        bayer_only,
        EVERYTHING,
    )
    .unwrap_err();
    assert!(err.to_string().contains("none usable"), "{err}");
}

#[test]
fn an_unprobed_v4l2_device_is_asked_for_raw_frames() {
    let plan = plan(
        SourceKind::V4l2 {
            device: "/dev/video9".into(),
        },
        spec(640, 480),
        EncoderChoice::Auto,
        BoardFamily::X86,
        &[],
        &["x264enc"],
    )
    .unwrap();
    assert!(
        plan.to_string()
            .starts_with("v4l2src device=/dev/video9 ! video/x-raw")
    );
}

#[test]
fn odd_sizes_are_refused() {
    let err = plan(
        SourceKind::Test,
        CaptureSpec {
            width: 641,
            height: 480,
            framerate: 30,
        },
        EncoderChoice::Auto,
        BoardFamily::X86,
        &[],
        EVERYTHING,
    )
    .unwrap_err();
    assert!(err.to_string().contains("641x480"), "{err}");
}

#[test]
fn no_encoder_fails_the_plan() {
    let err = plan(
        SourceKind::Test,
        spec(640, 480),
        EncoderChoice::Auto,
        BoardFamily::X86,
        &[],
        &[],
    )
    .unwrap_err();
    assert!(matches!(err, PlanError::EncoderUnavailable { .. }));
}

#[test]
fn a_plan_serialises_to_json_for_probe() {
    let plan = plan(
        SourceKind::Test,
        spec(640, 480),
        EncoderChoice::Auto,
        BoardFamily::X86,
        &[],
        EVERYTHING,
    )
    .unwrap();
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["steps"][0]["step"], "element");
    assert_eq!(json["steps"][1]["step"], "caps");
    assert!(
        json["steps"][1]["value"]
            .as_str()
            .unwrap()
            .starts_with("video/x-raw")
    );
}
