//! A real browser for the UI tests: Debian's Chromium driven through the local chromedriver
//! (never a downloaded one), over WebDriver (fantoccini). Each `Browser` runs its own chromedriver
//! on a free port and one headless Chromium session that accepts the appliance's self-signed
//! certificate (the TLS is real; only the trust step a tablet does by hand is skipped).
//!
//! The error collector: `errors()` returns the browser console's SEVERE entries (script errors,
//! CSP violations, failed loads — Chromium logs every 4xx/5xx resource there) since the last call.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
use fantoccini::{Client, Locator};
use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    pub client: Client,
    driver: Child,
    driver_url: String,
    session: String,
    pub base: String,
    pub shots: PathBuf,
}

/// Where screenshots go: under the cargo target directory, beside the test binaries.
pub fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    // target/release/deps/<test> → target/ui-screenshots
    let target = exe.ancestors().nth(3).map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    let d = target.join("ui-screenshots");
    std::fs::create_dir_all(&d).expect("screenshot dir");
    d
}

impl Browser {
    /// A headless Chromium with a `width`×`height` viewport, talking to the app at `base`.
    pub async fn start(base: &str, width: u32, height: u32) -> Browser {
        assert!(
            Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists(),
            "Debian's chromium and chromium-driver are required (scripts/setup.sh installs them)"
        );
        let port = super::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver_url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--lang=zh-CN",
                    format!("--window-size={width},{height}"),
                    "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream",
                ],
                "prefs": { "intl.accept_languages": "zh-CN,zh" }
            }
        }))
        .unwrap();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = Client::with_capabilities_and_connector(&driver_url, &caps, connector).await.expect("WebDriver session");
        let session = client.session_id().await.ok().flatten().expect("session id");
        let b = Browser { client, driver, driver_url, session, base: base.to_string(), shots: screenshot_dir() };
        b.viewport(width, height).await;
        b
    }

    /// Sizes the window so that the page itself (the viewport) is `width`×`height`, as on a tablet.
    pub async fn viewport(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.expect("window size");
        let v = self.client.execute("return [window.innerWidth, window.innerHeight]", vec![]).await.expect("viewport");
        let (w, h) = (v[0].as_u64().unwrap_or(width as u64) as u32, v[1].as_u64().unwrap_or(height as u64) as u32);
        if (w, h) != (width, height) {
            let (ww, wh) = (width + width.saturating_sub(w), height + height.saturating_sub(h));
            self.client.set_window_size(ww, wh).await.expect("window size");
        }
    }

    pub async fn go(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap_or_else(|e| panic!("goto {path}: {e}"));
    }

    pub async fn path(&self) -> String {
        let u = self.client.current_url().await.expect("url");
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.wait_css(css, Duration::from_secs(20)).await
    }

    pub async fn wait_css(&self, css: &str, within: Duration) -> fantoccini::elements::Element {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                return e;
            }
            if Instant::now() > deadline {
                let src = self.client.source().await.unwrap_or_default();
                panic!("no element '{css}' on {} within {within:?}; page:\n{}", self.path().await, &src[..src.len().min(3000)]);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn exists(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    /// The element's text. htmx may swap the element between finding and reading it (a polled
    /// photo card), so a stale element is found again.
    pub async fn text(&self, css: &str) -> String {
        for _ in 0..20 {
            if let Ok(t) = self.find(css).await.text().await {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot read the text of '{css}'")
    }

    /// An attribute of the element, found again if htmx swapped it meanwhile.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        for _ in 0..20 {
            if let Ok(v) = self.find(css).await.attr(name).await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot read {name} of '{css}'")
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        e.click().await.unwrap_or_else(|err| panic!("click {css}: {err}"));
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.ok();
        e.send_keys(text).await.unwrap_or_else(|err| panic!("type into {css}: {err}"));
    }

    /// Waits until `js` (an expression) is truthy.
    pub async fn wait_js(&self, js: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.client.execute(&format!("return ({js});"), vec![]).await.unwrap_or(Value::Null);
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            if Instant::now() > deadline {
                let flash = self.client.execute("return document.querySelector('#flash-err, #error-message')?.textContent", vec![]).await;
                let _ = self.screenshot("failure").await;
                let _ = std::fs::write(self.shots.join("failure.html"), self.client.source().await.unwrap_or_default());
                eprintln!("console: {:?}", self.errors().await);
                panic!("'{js}' did not become true on {} within {within:?} (page error: {flash:?})", self.path().await);
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    pub async fn js(&self, js: &str) -> Value {
        self.client.execute(js, vec![]).await.unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// A drawn stroke, as a finger would: press at the element's centre offset, move, release.
    pub async fn draw_on(&self, css: &str, points: &[(f64, f64)]) {
        let e = self.find(css).await;
        let mut m = MouseActions::new("finger".into());
        let (x0, y0) = points[0];
        m = m.then(PointerAction::MoveToElement { element: e.clone(), duration: None, x: x0, y: y0 });
        m = m.then(PointerAction::Down { button: MOUSE_BUTTON_LEFT });
        for &(x, y) in &points[1..] {
            m = m.then(PointerAction::MoveToElement { element: e.clone(), duration: Some(Duration::from_millis(40)), x, y });
        }
        m = m.then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
        self.client.perform_actions(m).await.expect("draw");
    }

    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let p = self.shots.join(format!("{name}.png"));
        std::fs::write(&p, png).expect("write screenshot");
        p
    }

    /// The console's SEVERE entries since the last call (chromedriver's log endpoint).
    pub async fn errors(&self) -> Vec<String> {
        let url = format!("{}/session/{}/se/log", self.driver_url, self.session);
        let r = reqwest::Client::new().post(url).json(&json!({ "type": "browser" })).send().await;
        let Ok(r) = r else { return vec!["could not read the browser log".into()] };
        let v: Value = r.json().await.unwrap_or(Value::Null);
        v["value"]
            .as_array()
            .map(|a| a.iter().filter(|e| e["level"] == "SEVERE").map(|e| e["message"].as_str().unwrap_or("").to_string()).collect())
            .unwrap_or_default()
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Fails the test when the page logged console errors since the last look.
pub async fn clean(b: &Browser, step: &str) {
    let errors = b.errors().await;
    assert!(errors.is_empty(), "browser console errors after '{step}': {errors:#?}");
}

/// 5xx responses the daemon answered so far (its own metrics, read from loopback).
pub async fn server_errors(api: &super::Api) -> u64 {
    let text = api.client.get(format!("{}/metrics", api.base)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("servicebay_http_requests_total") && l.contains("status=\"5"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Signs `user` in on the login page with the tests' permanent password (`<user>-Permanent-Pw1`,
/// set by `Api::user`); done when the signed-in navigation shows.
pub async fn login(b: &Browser, user: &str) {
    b.go("/login").await;
    b.type_into("#username", user).await;
    b.type_into("#password", &format!("{user}-Permanent-Pw1")).await;
    b.click("#login-submit").await;
    b.find(".topbar nav a[href='/today']").await;
}
