//! Any bytes a tablet can upload: the intake check (sniff, header dimensions, size limits), the
//! bounded decode with EXIF orientation, and the detector's letterbox + CHW preprocessing. The
//! properties: no panic, no abort, no unbounded allocation (libFuzzer's -rss_limit_mb), and a
//! preprocessed tensor of exactly 3 × 640 × 640 values in 0..=1 for every image that decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The appliance's defaults: 20 MiB bodies, 50 megapixels.
const MAX_BYTES: u64 = 20 * 1024 * 1024;
const MAX_PIXELS: u64 = 50_000_000;

fuzz_target!(|data: &[u8]| {
    if servicebay::media::inspect(data, MAX_BYTES, MAX_PIXELS).is_err() {
        return;
    }
    let Ok(img) = servicebay::vision::preprocess::decode_image(data, "fuzz") else { return };
    let (chw, _) = servicebay::vision::preprocess::preprocess(&img, 640);
    assert_eq!(chw.len(), 3 * 640 * 640);
    assert!(chw.iter().all(|v| (0.0..=1.0).contains(v)));
});
