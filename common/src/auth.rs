//! Who may write and read.
//!
//! - [`CameraKeys`]: the camera API keys of `POST` uploads. A key is `crowd_<id>_<secret>`, 32
//!   random bytes; the key file (`API_KEYS_FILE`, a Kubernetes Secret) holds per key its id, the
//!   SHA-256 of the whole key and the cameras it may upload for, never the key itself. SHA-256
//!   rather than a slow password hash: the keys are random 256-bit strings, not passwords, so
//!   there is nothing to guess from a stolen hash, and every upload can be checked in
//!   microseconds. The file is read again when it changes (a Secret update).
//! - [`SharedToken`]: one secret shared by two services (the dashboard's ingest token, the
//!   viewer token, the admin token), compared in constant time.
//! - [`RateLimits`]: a token bucket per key, so that one camera cannot starve the others.
//!
//! Every refusal is an [`AuthError`], answered with the JSON error body.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::json_error;

const KEY_PREFIX: &str = "crowd_";
/// `k_` and 8 hexadecimal digits.
const KEY_ID_LEN: usize = 10;
const SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no credential: send `Authorization: Bearer <key>`")]
    Missing,
    #[error("unknown or malformed credential")]
    Unknown,
    #[error("this key may not upload for camera `{0}`")]
    CameraNotAllowed(String),
    #[error(
        "too many photos for this key: at most {per_minute} a minute (bursts of {burst}); retry in {retry_after_secs} s"
    )]
    RateLimited {
        per_minute: u32,
        burst: u32,
        retry_after_secs: u64,
    },
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::Unknown => "unauthorized",
            AuthError::CameraNotAllowed(_) => "camera_not_allowed",
            AuthError::RateLimited { .. } => "rate_limited",
        }
    }
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        match self {
            AuthError::Missing | AuthError::Unknown => StatusCode::UNAUTHORIZED,
            AuthError::CameraNotAllowed(_) => StatusCode::FORBIDDEN,
            AuthError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = json_error(self.status_code(), self.code(), self.to_string());
        let headers = response.headers_mut();
        match self {
            AuthError::Missing | AuthError::Unknown => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"crowd\""),
                );
            }
            AuthError::RateLimited {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, (*retry_after_secs).into());
            }
            AuthError::CameraNotAllowed(_) => {}
        }
        response
    }
}

/// The token of an `Authorization: Bearer <token>` header, if any.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The password of an `Authorization: Basic` header (the user name is not checked), if any.
pub fn basic_password(req: &HttpRequest) -> Option<String> {
    use base64::Engine;
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_owned())
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A secret shared by two services, kept as its SHA-256 and compared in constant time (hashing
/// first also hides the secret's length).
#[derive(Clone)]
pub struct SharedToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedToken(…)")
    }
}

/// The shared token a service requires (or sends): the configured one, or none with `no_auth`;
/// an error when it is missing or too short to be secret.
pub fn required_token(
    token: Option<&str>,
    no_auth: bool,
    what: &str,
) -> Result<Option<String>, String> {
    match (token, no_auth) {
        (_, true) => Ok(None),
        (Some(token), false) if token.len() >= 16 => Ok(Some(token.to_owned())),
        (Some(_), false) => Err(format!(
            "{what} must be at least 16 characters (e.g. `head -c 32 /dev/urandom | base64`)"
        )),
        (None, false) => Err(format!(
            "{what} is not set (or start with --no-auth for a local demo)"
        )),
    }
}

/// Whether a public listener on `listen` may serve viewers: with a viewer token always; without
/// one only on loopback (this machine alone reaches it), unless `open` (an authenticating proxy in
/// front does the checking) or `no_auth` (a local demo) says otherwise.
pub fn check_viewer_access(
    listen: std::net::SocketAddr,
    viewer_token: Option<&str>,
    open: bool,
    no_auth: bool,
) -> Result<(), String> {
    if viewer_token.is_some() || open || no_auth || listen.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "the dashboard's public listener {listen} is reachable from other machines and \
         VIEWER_TOKEN is not set, so anyone reaching it would see every camera's photos: set \
         VIEWER_TOKEN, listen on 127.0.0.1, or with an authenticating proxy in front set \
         OPEN_VIEWERS=1 (--open-viewers)"
    ))
}

impl SharedToken {
    pub fn new(secret: &str) -> Self {
        Self {
            digest: sha256(secret),
        }
    }

    pub fn matches(&self, candidate: &str) -> bool {
        bool::from(sha256(candidate).ct_eq(&self.digest))
    }

    /// Whether the request carries this token, as `Bearer` or as the password of `Basic`.
    pub fn admits(&self, req: &HttpRequest) -> bool {
        bearer_token(req).is_some_and(|t| self.matches(t))
            || basic_password(req).is_some_and(|p| self.matches(&p))
    }
}

/// A random secret of `bytes` bytes, base64url without padding.
pub fn random_secret(bytes: usize) -> String {
    use base64::Engine;
    let mut secret = vec![0u8; bytes];
    getrandom::fill(&mut secret).expect("the operating system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
}

/// Which cameras a key may upload for: exact ids, patterns with `*` (any run of characters),
/// `*` alone for all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraScope {
    patterns: Vec<String>,
}

impl CameraScope {
    pub fn parse(text: &str) -> Result<Self, String> {
        let patterns: Vec<String> = text.split(',').map(|p| p.trim().to_owned()).collect();
        for pattern in &patterns {
            let valid = !pattern.is_empty()
                && pattern.len() <= 64
                && pattern
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '*');
            if !valid {
                return Err(format!(
                    "camera pattern `{pattern}`: camera id characters [A-Za-z0-9_-] and `*` only"
                ));
            }
        }
        Ok(Self { patterns })
    }

    pub fn allows(&self, camera: &str) -> bool {
        self.patterns.iter().any(|p| glob_match(p, camera))
    }
}

impl std::fmt::Display for CameraScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.patterns.join(","))
    }
}

/// `*` matches any run of characters (none included); everything else matches itself.
/// Hand-written: one wildcard, which a glob crate would bring with a syntax we do not want.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    if !text.ends_with(last) {
        return false;
    }
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// One line of the key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// `k_` and 8 hex digits: names the key in logs and metrics.
    pub id: String,
    digest: [u8; 32],
    pub scope: CameraScope,
    /// Photos a minute and burst, when this key has its own (`rate=N/min`, `burst=N`).
    pub rate: Option<u32>,
    pub burst: Option<u32>,
}

/// A new key, as `crowd keys new` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// The key itself: shown once, kept by the camera only.
    pub key: String,
    /// The line to add to the key file (no secret in it).
    pub line: String,
}

/// Makes a new random key for `scope`.
pub fn new_key(scope: &CameraScope) -> NewKey {
    let mut id_bytes = [0u8; 4];
    getrandom::fill(&mut id_bytes).expect("the operating system's random source");
    let id = format!("k_{}", hex(&id_bytes));
    let key = format!("{KEY_PREFIX}{id}_{}", random_secret(SECRET_BYTES));
    let line = format!("{id} sha256:{} {scope}", hex(&sha256(&key)));
    NewKey { key, line }
}

fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let id = rest.get(..KEY_ID_LEN)?;
    (rest.as_bytes().get(KEY_ID_LEN) == Some(&b'_')).then_some(id)
}

/// The parsed key file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFile {
    entries: HashMap<String, KeyEntry>,
}

impl KeyFile {
    /// Parses the file's text: one key per line, `id sha256:HEX cameras [rate=N/min] [burst=N]`;
    /// `#` starts a comment. Errors name the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |what: String| format!("line {}: {what}", number + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [id, digest, scope, ref options @ ..] = fields[..] else {
                return Err(at(
                    "expected `id sha256:HEX cameras [rate=N/min] [burst=N]`".into(),
                ));
            };
            let valid_id = id.len() == KEY_ID_LEN
                && id.starts_with("k_")
                && id[2..].bytes().all(|b| b.is_ascii_hexdigit());
            if !valid_id {
                return Err(at(format!("key id `{id}` is not `k_` and 8 hex digits")));
            }
            let digest = digest
                .strip_prefix("sha256:")
                .and_then(parse_hex)
                .ok_or_else(|| at("the hash must be `sha256:` and 64 hex digits".into()))?;
            let scope = CameraScope::parse(scope).map_err(at)?;
            let (mut rate, mut burst) = (None, None);
            for option in options {
                if let Some(value) = option.strip_prefix("rate=") {
                    let n = value.strip_suffix("/min").unwrap_or(value);
                    rate = Some(
                        n.parse()
                            .map_err(|_| at(format!("`{option}`: rate=N/min")))?,
                    );
                } else if let Some(value) = option.strip_prefix("burst=") {
                    burst = Some(
                        value
                            .parse()
                            .map_err(|_| at(format!("`{option}`: burst=N")))?,
                    );
                } else {
                    return Err(at(format!("unknown option `{option}`")));
                }
            }
            if rate == Some(0) || burst == Some(0) {
                return Err(at("rate and burst must be at least 1".into()));
            }
            let entry = KeyEntry {
                id: id.to_owned(),
                digest,
                scope,
                rate,
                burst,
            };
            if entries.insert(id.to_owned(), entry).is_some() {
                return Err(at(format!("key id `{id}` appears twice")));
            }
        }
        Ok(Self { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of `key`, if the key is one of the file's.
    pub fn verify(&self, key: &str) -> Result<&KeyEntry, AuthError> {
        let entry = key_id(key)
            .and_then(|id| self.entries.get(id))
            .ok_or(AuthError::Unknown)?;
        if bool::from(sha256(key).ct_eq(&entry.digest)) {
            Ok(entry)
        } else {
            Err(AuthError::Unknown)
        }
    }
}

/// The camera keys a service checks: from a key file re-read when it changes, or none at all
/// (`--no-auth`, local demos only).
#[derive(Clone)]
pub enum CameraKeys {
    Disabled,
    File(Arc<WatchedKeyFile>),
}

pub struct WatchedKeyFile {
    path: PathBuf,
    state: RwLock<(Arc<KeyFile>, Option<SystemTime>)>,
}

impl CameraKeys {
    /// The keys a service starts with: none with `no_auth` (said loudly in the log), else the
    /// key file, which must be given.
    pub fn configure(file: Option<&Path>, no_auth: bool, service: &str) -> Result<Self, String> {
        if no_auth {
            tracing::warn!(
                service,
                "camera keys are OFF (--no-auth): anyone who reaches this service can upload; for local demos only"
            );
            return Ok(CameraKeys::Disabled);
        }
        match file {
            Some(path) => Self::from_file(path),
            None => Err(format!(
                "{service} needs the camera key file (--api-keys-file / API_KEYS_FILE; make keys with `crowd keys new`), or --no-auth for a local demo"
            )),
        }
    }

    /// Reads the key file; a missing or unreadable file is an error (a service with no key
    /// would refuse every camera).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let (keys, modified) = read_key_file(path)?;
        tracing::info!(path = %path.display(), keys = keys.len(), "camera keys loaded");
        Ok(CameraKeys::File(Arc::new(WatchedKeyFile {
            path: path.to_owned(),
            state: RwLock::new((Arc::new(keys), modified)),
        })))
    }

    /// The key behind the request's bearer token.
    pub fn authenticate(&self, req: &HttpRequest) -> Result<Option<KeyEntry>, AuthError> {
        match self {
            CameraKeys::Disabled => Ok(None),
            CameraKeys::File(file) => {
                let token = bearer_token(req).ok_or(AuthError::Missing)?;
                let keys = file.current();
                keys.verify(token).cloned().map(Some)
            }
        }
    }

    /// Re-reads the key file every `every` when its modification time changed, for ever (a
    /// Kubernetes Secret mounted as a volume is updated in place). A file that fails to parse is
    /// logged and the previous keys kept.
    pub async fn watch(self, every: Duration) {
        let CameraKeys::File(file) = self else {
            return;
        };
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            let modified = std::fs::metadata(&file.path)
                .and_then(|m| m.modified())
                .ok();
            let known = file.state.read().unwrap_or_else(|e| e.into_inner()).1;
            if modified == known {
                continue;
            }
            match read_key_file(&file.path) {
                Ok((keys, modified)) => {
                    tracing::info!(path = %file.path.display(), keys = keys.len(), "camera keys reloaded");
                    *file.state.write().unwrap_or_else(|e| e.into_inner()) =
                        (Arc::new(keys), modified);
                }
                Err(error) => {
                    tracing::error!(%error, "camera key file changed but cannot be read; keeping the previous keys")
                }
            }
        }
    }
}

impl WatchedKeyFile {
    fn current(&self) -> Arc<KeyFile> {
        Arc::clone(&self.state.read().unwrap_or_else(|e| e.into_inner()).0)
    }
}

fn read_key_file(path: &Path) -> Result<(KeyFile, Option<SystemTime>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the camera key file {}: {e}", path.display()))?;
    let keys = KeyFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    Ok((keys, modified))
}

/// Authorises an upload for `camera` by the key `entry` (`None`: authentication is off).
pub fn authorise(entry: Option<&KeyEntry>, camera: &str) -> Result<(), AuthError> {
    match entry {
        Some(entry) if !entry.scope.allows(camera) => {
            Err(AuthError::CameraNotAllowed(camera.to_owned()))
        }
        _ => Ok(()),
    }
}

type Limiter = governor::DefaultDirectRateLimiter;
/// A key's bucket with the rate and burst it was made for (a changed key line makes a new one).
type Bucket = (Arc<Limiter>, u32, u32);

/// A token bucket per key: `per_minute` photos a minute on average, `burst` at once.
pub struct RateLimits {
    per_minute: u32,
    burst: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimits {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            burst: burst.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one photo from `entry`'s bucket, or says when the next one may come.
    pub fn check(&self, entry: &KeyEntry) -> Result<(), AuthError> {
        let per_minute = entry.rate.unwrap_or(self.per_minute);
        let burst = entry.burst.unwrap_or(self.burst);
        let limiter = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            let slot = buckets
                .entry(entry.id.clone())
                .or_insert_with(|| (Arc::new(limiter(per_minute, burst)), per_minute, burst));
            if (slot.1, slot.2) != (per_minute, burst) {
                *slot = (Arc::new(limiter(per_minute, burst)), per_minute, burst);
            }
            Arc::clone(&slot.0)
        };
        limiter.check().map_err(|not_until| {
            use governor::clock::{Clock, DefaultClock};
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            AuthError::RateLimited {
                per_minute,
                burst,
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        })
    }
}

fn limiter(per_minute: u32, burst: u32) -> Limiter {
    use std::num::NonZeroU32;
    let quota = governor::Quota::per_minute(NonZeroU32::new(per_minute).expect("at least 1"))
        .allow_burst(NonZeroU32::new(burst).expect("at least 1"));
    governor::RateLimiter::direct(quota)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn viewers_need_a_token_unless_only_this_machine_reaches_the_listener() {
        let anywhere: std::net::SocketAddr = "0.0.0.0:4400".parse().unwrap();
        let pod_ip: std::net::SocketAddr = "10.1.2.3:4400".parse().unwrap();
        let loopback: std::net::SocketAddr = "127.0.0.1:4400".parse().unwrap();
        let loopback6: std::net::SocketAddr = "[::1]:4400".parse().unwrap();
        for listen in [anywhere, pod_ip] {
            let refused = check_viewer_access(listen, None, false, false).unwrap_err();
            assert!(refused.contains("VIEWER_TOKEN") && refused.contains(&listen.to_string()));
            assert!(check_viewer_access(listen, Some("a-viewer-token-1234"), false, false).is_ok());
            assert!(check_viewer_access(listen, None, true, false).is_ok());
            assert!(check_viewer_access(listen, None, false, true).is_ok());
        }
        for listen in [loopback, loopback6] {
            assert!(check_viewer_access(listen, None, false, false).is_ok());
        }
    }

    #[test]
    fn a_new_key_verifies_against_its_line_and_its_line_holds_no_secret() {
        let scope = CameraScope::parse("gate-*,north").unwrap();
        let new = new_key(&scope);
        assert!(new.key.starts_with("crowd_k_"));
        let secret = &new.key[17..];
        assert_eq!(secret.len(), 43, "32 bytes, base64url");
        assert!(!new.line.contains(secret), "the line holds no secret");
        let file = KeyFile::parse(&format!("# a comment\n{}\n", new.line)).unwrap();
        let entry = file.verify(&new.key).unwrap();
        assert!(entry.scope.allows("gate-3") && entry.scope.allows("north"));
        assert!(!entry.scope.allows("south"));
        // One character off: unknown.
        let mut wrong = new.key.clone();
        wrong.pop();
        wrong.push(if new.key.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(file.verify(&wrong), Err(AuthError::Unknown));
        assert_eq!(file.verify("crowd_k_00000000_x"), Err(AuthError::Unknown));
        assert_eq!(file.verify("nonsense"), Err(AuthError::Unknown));
    }

    #[test]
    fn glob_patterns() {
        let cases = [
            ("*", "anything", true),
            ("gate-*", "gate-1", true),
            ("gate-*", "gate-", true),
            ("gate-*", "gates", false),
            ("*-north", "gate-north", true),
            ("a*b*c", "aXXbYc", true),
            ("a*b*c", "acb", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(glob_match(pattern, text), expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn key_file_errors_name_the_line() {
        let error = KeyFile::parse("k_0123abcd sha256:zz *\n").unwrap_err();
        assert!(error.starts_with("line 1:"), "{error}");
        let digest = "0".repeat(64);
        let ok = KeyFile::parse(&format!(
            "k_0123abcd sha256:{digest} * rate=600/min burst=50"
        ))
        .unwrap();
        assert_eq!(ok.len(), 1);
        let error = KeyFile::parse(&format!("\nk_0123abcd sha256:{digest} bad!id")).unwrap_err();
        assert!(error.starts_with("line 2:"), "{error}");
    }

    #[test]
    fn shared_tokens_accept_bearer_and_basic() {
        let token = SharedToken::new("s3cret");
        let bearer = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "Bearer s3cret"))
            .to_http_request();
        assert!(token.admits(&bearer));
        // "viewer:s3cret" in base64.
        let basic = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "Basic dmlld2VyOnMzY3JldA=="))
            .to_http_request();
        assert!(token.admits(&basic));
        let wrong = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "Bearer s3cre"))
            .to_http_request();
        assert!(!token.admits(&wrong));
        assert!(!token.admits(&TestRequest::default().to_http_request()));
    }

    #[test]
    fn the_bucket_allows_a_burst_then_refuses_with_a_retry_time() {
        let limits = RateLimits::new(60, 3);
        let digest = "0".repeat(64);
        let file = KeyFile::parse(&format!("k_0123abcd sha256:{digest} *")).unwrap();
        let entry = file.entries.values().next().unwrap();
        for _ in 0..3 {
            limits.check(entry).unwrap();
        }
        match limits.check(entry) {
            Err(AuthError::RateLimited {
                retry_after_secs, ..
            }) => assert_eq!(retry_after_secs, 1),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
