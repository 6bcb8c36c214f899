//! JPEG plans per board and camera kind.
use super::*;
use crate::camera::{CameraApi, CameraMode};

const CAPTURE: CaptureSpec = CaptureSpec {
    width: 640,
    height: 480,
    framerate: 30,
};

fn input<'a>(source: &'a SourceKind, board: BoardFamily, cameras: &'a [Camera]) -> JpegInput<'a> {
    JpegInput {
        source,
        capture: CAPTURE,
        framerate: 2,
        quality: 85,
        board,
        cameras,
    }
}

fn webcam(modes: Vec<PixelKind>) -> Camera {
    Camera {
        api: CameraApi::V4l2,
        name: "USB Camera".into(),
        device: Some("/dev/video0".into()),
        camera_id: None,
        driver: Some("uvcvideo".into()),
        bus: Some("usb-1".into()),
        modes: modes
            .into_iter()
            .map(|pixels| CameraMode {
                pixels,
                width: 640,
                height: 480,
                framerates: vec![30],
            })
            .collect(),
    }
}

fn everything(_: &str) -> bool {
    true
}

fn factories(plan: &JpegPlan) -> Vec<&str> {
    plan.factories().collect()
}

#[test]
fn the_test_pattern_is_rate_limited_then_encoded_in_software() {
    let plan =
        JpegPlan::build(input(&SourceKind::Test, BoardFamily::X86, &[]), everything).unwrap();
    assert_eq!(plan.encoder, JpegEncoder::JpegEnc);
    assert_eq!(
        factories(&plan),
        [
            "videotestsrc",
            "queue",
            "videorate",
            "videoconvert",
            "jpegenc"
        ]
    );
    // The rate limit comes before any conversion: frames that are not
    // sent cost nothing.
    assert!(
        plan.to_string().contains(
            "videorate drop-only=true ! video/x-raw,framerate=(fraction)2/1 ! videoconvert"
        )
    );
    assert!(plan.to_string().ends_with("jpegenc quality=85 ! appsink"));
}

#[test]
fn a_webcam_that_delivers_mjpeg_is_passed_through() {
    let cameras = [webcam(vec![
        PixelKind::Raw("YUY2".into()),
        PixelKind::Mjpeg,
    ])];
    let source = SourceKind::V4l2 {
        device: "/dev/video0".into(),
    };
    let plan = JpegPlan::build(
        input(&source, BoardFamily::RaspberryPi, &cameras),
        everything,
    )
    .unwrap();
    assert_eq!(plan.encoder, JpegEncoder::Camera);
    assert_eq!(factories(&plan), ["v4l2src", "queue", "videorate"]);
    assert!(plan.to_string().contains("image/jpeg,width=(int)640"));
    assert!(
        plan.to_string()
            .contains("image/jpeg,framerate=(fraction)2/1")
    );
    assert_eq!(JpegEncoder::Camera.quality(50), None);
}

#[test]
fn a_pi_encodes_in_hardware_when_gstreamer_has_it() {
    let cameras = [webcam(vec![PixelKind::Raw("YUY2".into())])];
    let source = SourceKind::Auto;
    let plan = JpegPlan::build(
        input(&source, BoardFamily::RaspberryPi, &cameras),
        everything,
    )
    .unwrap();
    assert_eq!(plan.encoder, JpegEncoder::V4l2JpegEnc);
    assert!(
        plan.to_string()
            .contains("v4l2jpegenc extra-controls=\"controls,compression_quality=85\"")
    );
    let without = JpegPlan::build(input(&source, BoardFamily::RaspberryPi, &cameras), |name| {
        name != "v4l2jpegenc"
    })
    .unwrap();
    assert_eq!(without.encoder, JpegEncoder::JpegEnc);
    // The Pi 5 has no codec block at all.
    let pi5 = JpegPlan::build(
        input(&source, BoardFamily::RaspberryPi5, &cameras),
        everything,
    )
    .unwrap();
    assert_eq!(pi5.encoder, JpegEncoder::JpegEnc);
}

#[test]
fn an_h264_only_camera_has_no_jpeg_mode() {
    let cameras = [webcam(vec![PixelKind::H264])];
    let error = JpegPlan::build(
        input(&SourceKind::Auto, BoardFamily::X86, &cameras),
        everything,
    )
    .unwrap_err();
    assert!(matches!(error, PlanError::NoMode { .. }), "{error}");
}

#[test]
fn a_missing_jpegenc_is_named() {
    let error = JpegPlan::build(input(&SourceKind::Test, BoardFamily::X86, &[]), |name| {
        name != "jpegenc"
    })
    .unwrap_err();
    assert!(error.to_string().contains("jpegenc"), "{error}");
}
