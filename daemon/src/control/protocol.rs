//! Requests and responses on the control socket.

use serde::{Deserialize, Serialize};

/// Larger requests are refused: commands are a few dozen bytes.
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    Status,
    Devices,
    Destinations { device: String },
    Explain { device: String, destination: String },
    Consent {
        device: String,
        selector: String,
        /// `--for 15m`: the consent expires by itself.
        #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
        duration: Option<String>,
    },
    Revoke { device: String, selector: String },
    Quarantine { device: String },
    Release { device: String },
    Reload,
    /// The recent alert lines, those within `since` (a duration) if given.
    Alerts {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<String>,
    },
    /// Every list: sources, entries, refreshes (SPEC §4 `leash lists`).
    Lists,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Response {
    pub fn ok(data: impl Serialize) -> Response {
        Response { ok: true, error: None, data: serde_json::to_value(data).unwrap_or(serde_json::Value::Null) }
    }

    pub fn err(msg: impl ToString) -> Response {
        Response { ok: false, error: Some(msg.to_string()), data: serde_json::Value::Null }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_else(|_| br#"{"ok":false,"error":"unencodable response"}"#.to_vec());
        v.push(b'\n');
        v
    }
}

pub fn decode_request(line: &[u8]) -> Result<Request, String> {
    if line.len() > MAX_REQUEST {
        return Err(format!("request larger than {MAX_REQUEST} bytes"));
    }
    serde_json::from_slice(line).map_err(|e| format!("bad request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let r = Request::Consent { device: "cam".into(), selector: "ring.com".into(), duration: None };
        let line = serde_json::to_vec(&r).unwrap();
        assert_eq!(String::from_utf8(line.clone()).unwrap(), r#"{"cmd":"consent","device":"cam","selector":"ring.com"}"#);
        assert_eq!(decode_request(&line).unwrap(), r);
        assert_eq!(decode_request(br#"{"cmd":"status"}"#).unwrap(), Request::Status);
        let timed = Request::Consent { device: "cam".into(), selector: "x".into(), duration: Some("15m".into()) };
        assert_eq!(decode_request(br#"{"cmd":"consent","device":"cam","selector":"x","for":"15m"}"#).unwrap(), timed);
        assert_eq!(decode_request(br#"{"cmd":"alerts"}"#).unwrap(), Request::Alerts { since: None });
    }

    #[test]
    fn refuses_bad_requests() {
        assert!(decode_request(b"").is_err());
        assert!(decode_request(br#"{"cmd":"format-disk"}"#).is_err());
        assert!(decode_request(br#"{"cmd":"release"}"#).is_err());
        assert!(decode_request(&vec![b' '; MAX_REQUEST + 1]).is_err());
    }
}
