//! The UI's static files, embedded in the binary (no file on disk to go missing, nothing from
//! another host). Each is served with a content hash as its ETag and cached for a day; the pages
//! name them by fixed paths under `/static/`.

use http::{HeaderValue, StatusCode};
use sha2::{Digest, Sha256};
use warp::reply::Response;
use warp::Reply;

struct Asset {
    name: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset { name: "app.css", mime: "text/css; charset=utf-8", body: include_bytes!("static/app.css") },
    Asset { name: "app.js", mime: "text/javascript; charset=utf-8", body: include_bytes!("static/app.js") },
    Asset { name: "camera.js", mime: "text/javascript; charset=utf-8", body: include_bytes!("static/camera.js") },
    Asset { name: "signature.js", mime: "text/javascript; charset=utf-8", body: include_bytes!("static/signature.js") },
    Asset { name: "measure.js", mime: "text/javascript; charset=utf-8", body: include_bytes!("static/measure.js") },
    Asset { name: "stream.js", mime: "text/javascript; charset=utf-8", body: include_bytes!("static/stream.js") },
    Asset { name: "overlay.js", mime: "text/javascript; charset=utf-8", body: include_bytes!("static/overlay.js") },
    Asset { name: "slider.js", mime: "text/javascript; charset=utf-8", body: include_bytes!("static/slider.js") },
    Asset { name: "upload.js", mime: "text/javascript; charset=utf-8", body: include_bytes!("static/upload.js") },
    Asset { name: "follow_up.css", mime: "text/css; charset=utf-8", body: include_bytes!("static/follow_up.css") },
    Asset { name: "htmx.min.js", mime: "text/javascript; charset=utf-8", body: include_bytes!("static/htmx.min.js") },
    Asset { name: "htmx.LICENSE", mime: "text/plain; charset=utf-8", body: include_bytes!("static/htmx.LICENSE") },
];

pub fn serve(name: &str) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.name == name) else {
        return super::harden(warp::reply::with_status("not found", StatusCode::NOT_FOUND).into_response());
    };
    let mut r = Response::new(a.body.into());
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(a.mime));
    h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", &hex::encode(Sha256::digest(a.body))[..16])) {
        h.insert(http::header::ETAG, v);
    }
    super::harden(r)
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_asset_refers_to_another_host() {
        for a in super::ASSETS.iter().filter(|a| !a.name.ends_with("LICENSE")) {
            let text = String::from_utf8_lossy(a.body);
            for bad in ["http://", "https://", "//cdn", "fonts.googleapis", "@import url("] {
                // htmx carries no URLs to other hosts in code paths; an XML namespace string is fine.
                let hits = text.matches(bad).filter(|_| !text.contains("http://www.w3.org/2000/svg") || bad != "http://").count();
                assert_eq!(hits, 0, "{} mentions {bad}", a.name);
            }
        }
    }
}
