//! An OpenAI-compatible remote provider (the seed's multi-vendor fallback): off by default, used
//! only when configured, and only ever sent redacted text — phone numbers, e-mail addresses, ID
//! card numbers, VINs and licence plates are replaced before a request leaves the store.
//!
//! `FallbackTextGen` puts it behind the local engine: the local model answers when it can; the
//! remote one only when the local one is unavailable or failed. Structured calls still pass the
//! GBNF grammar (llama.cpp's server honours a `grammar` field; others ignore it), and callers
//! validate every structured output anyway, so a provider that ignores it cannot inject data.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::json;

use super::{ChatMessage, Completion, FinishReason, GenParams, GenTimings, LlmError, Sampling, TextGen};

#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// e.g. https://api.example.com/v1 (the `/chat/completions` path is appended).
    pub base_url: String,
    /// File holding the API key (systemd credentials); read at start, never logged.
    pub api_key_file: Option<PathBuf>,
    pub model: String,
    pub timeout: Duration,
}

pub struct RemoteTextGen {
    cfg: RemoteConfig,
    key: Option<String>,
    client: reqwest::blocking::Client,
    name: String,
}

fn patterns() -> &'static [(Regex, &'static str)] {
    static P: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    P.get_or_init(|| {
        [
            // Order matters: the longest, most specific identifiers first. Word boundaries are
            // ASCII ones: in "打021-…" the Chinese character must count as a boundary.
            (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", "[邮箱]"),
            (r"(?-u:\b)\d{17}[\dXx](?-u:\b)", "[证件号]"),
            (r"(?-u:\b)[A-HJ-NPR-Z0-9]{17}(?-u:\b)", "[VIN]"),
            (r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领][A-Z]\s?[A-Z0-9]{5,6}", "[车牌]"),
            (r"(?:\+?86[\s-]?)?1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}", "[电话]"),
            (r"(?-u:\b)\d{3,4}-?\d{7,8}(?-u:\b)", "[电话]"),
        ]
        .into_iter()
        .filter_map(|(p, r)| Regex::new(p).ok().map(|re| (re, r)))
        .collect()
    })
}

/// Replace personal identifiers with placeholders.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for (re, with) in patterns() {
        out = re.replace_all(&out, *with).into_owned();
    }
    out
}

impl RemoteTextGen {
    pub fn new(cfg: RemoteConfig) -> Result<RemoteTextGen, LlmError> {
        let load = |reason: String| LlmError::Load { path: cfg.base_url.clone(), reason };
        let key = match &cfg.api_key_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| load(format!("cannot read the API key file {}: {e}", p.display())))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let client = reqwest::blocking::Client::builder()
            .timeout(cfg.timeout)
            .https_only(!cfg.base_url.starts_with("http://127.0.0.1") && !cfg.base_url.starts_with("http://localhost"))
            .build()
            .map_err(|e| load(e.to_string()))?;
        let name = format!("remote:{}", cfg.model);
        Ok(RemoteTextGen { cfg, key, client, name })
    }
}

impl TextGen for RemoteTextGen {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_available(&self) -> bool {
        true
    }

    fn generate(
        &self,
        messages: &[ChatMessage],
        params: &GenParams,
        on_token: Option<&mut dyn FnMut(&str) -> bool>,
    ) -> Result<Completion, LlmError> {
        let started = Instant::now();
        let msgs: Vec<_> = messages.iter().map(|m| json!({ "role": m.role.as_str(), "content": redact(&m.content) })).collect();
        let mut body = json!({ "model": self.cfg.model, "messages": msgs, "max_tokens": params.max_tokens, "stream": false });
        match params.sampling {
            Sampling::Greedy => body["temperature"] = json!(0.0),
            Sampling::Temperature { temperature, top_p, seed } => {
                body["temperature"] = json!(temperature);
                body["top_p"] = json!(top_p);
                body["seed"] = json!(seed);
            }
        }
        if !params.stop.is_empty() {
            body["stop"] = json!(params.stop);
        }
        if let Some(g) = &params.grammar {
            body["grammar"] = json!(g);
        }
        let url = format!("{}/chat/completions", self.cfg.base_url.trim_end_matches('/'));
        let mut req = self.client.post(&url).timeout(params.timeout.min(self.cfg.timeout)).json(&body);
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().map_err(|e| {
            if e.is_timeout() {
                LlmError::Timeout(params.timeout)
            } else {
                LlmError::Backend(format!("remote provider: {e}"))
            }
        })?;
        let status = resp.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(LlmError::Busy { retry_after_s: 5 });
        }
        if !status.is_success() {
            return Err(LlmError::Backend(format!("remote provider answered HTTP {status}")));
        }
        let v: serde_json::Value = resp.json().map_err(|e| LlmError::Backend(format!("remote provider sent invalid JSON: {e}")))?;
        let choice = &v["choices"][0];
        let mut text = choice["message"]["content"]
            .as_str()
            .ok_or_else(|| LlmError::Backend("remote provider sent no message content".into()))?
            .to_string();
        let mut finish = match choice["finish_reason"].as_str() {
            Some("length") => FinishReason::MaxTokens,
            Some("stop") if params.stop.iter().any(|s| text.ends_with(s.as_str())) => FinishReason::Stop,
            _ => FinishReason::Eos,
        };
        // Providers differ in whether they strip the stop string; we always do.
        for s in &params.stop {
            if let Some(cut) = text.find(s.as_str()) {
                text.truncate(cut);
                finish = FinishReason::Stop;
            }
        }
        if let Some(cb) = on_token {
            if !cb(&text) {
                return Err(LlmError::Cancelled);
            }
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let timings = GenTimings {
            prompt_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0) as usize,
            generated_tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0) as usize,
            gen_ms: ms,
            first_token_ms: ms,
            ..Default::default()
        };
        Ok(Completion { text, finish, timings })
    }
}

/// The local engine first; the remote provider when the local one is unavailable or fails.
pub struct FallbackTextGen {
    pub primary: Box<dyn TextGen>,
    pub secondary: Box<dyn TextGen>,
    name: String,
}

impl FallbackTextGen {
    pub fn new(primary: Box<dyn TextGen>, secondary: Box<dyn TextGen>) -> FallbackTextGen {
        let name = format!("{} (fallback {})", primary.name(), secondary.name());
        FallbackTextGen { primary, secondary, name }
    }
}

impl TextGen for FallbackTextGen {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_available(&self) -> bool {
        self.primary.is_available() || self.secondary.is_available()
    }

    fn status(&self) -> super::EngineStatus {
        // The operator cares about the local worker; the name says a fallback exists.
        super::EngineStatus { name: self.name.clone(), ..self.primary.status() }
    }

    fn generate(
        &self,
        messages: &[ChatMessage],
        params: &GenParams,
        mut on_token: Option<&mut dyn FnMut(&str) -> bool>,
    ) -> Result<Completion, LlmError> {
        if self.primary.is_available() {
            // Reborrow the callback for the first attempt (shortening the trait object's lifetime).
            let first: Option<&mut dyn FnMut(&str) -> bool> = match &mut on_token {
                Some(f) => Some(&mut **f),
                None => None,
            };
            match self.primary.generate(messages, params, first) {
                Err(LlmError::Cancelled) => return Err(LlmError::Cancelled),
                Err(e) => tracing::warn!(error = %e, fallback = self.secondary.name(), "local LLM failed; asking the fallback provider"),
                ok => return ok,
            }
        }
        self.secondary.generate(messages, params, on_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_identifiers_are_redacted() {
        let t = "我是张先生，电话 138 1234 5678，也可以打021-62345678，邮箱 zhang@example.com，车牌沪A12345，\
                 VIN LSVAU2180N2183294，身份证 31010119800101123X。右前门有刮痕。";
        let r = redact(t);
        for secret in ["138 1234 5678", "62345678", "zhang@example.com", "沪A12345", "LSVAU2180N2183294", "31010119800101123X"] {
            assert!(!r.contains(secret), "{secret} leaked: {r}");
        }
        assert!(
            r.contains("[电话]") && r.contains("[车牌]") && r.contains("[VIN]") && r.contains("[证件号]") && r.contains("[邮箱]"),
            "{r}"
        );
        assert!(r.contains("右前门有刮痕"), "the problem itself is kept: {r}");
        assert_eq!(redact("大概30公分，露出白色底漆了"), "大概30公分，露出白色底漆了");
    }
}
