//! A request as the handlers see it ([`Request`], independent of warp), the
//! query-string decoding, and the reading of a body: bounded in size and in
//! the memory all bodies being received may hold together ([`BodyBudget`]).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warp::http::{HeaderMap, Method};

use super::ApiError;

/// A parsed request, independent of warp.
pub struct Request {
    pub method: Method,
    pub path: String,
    /// Query parameters in order; a name may repeat.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Request {
    /// The last value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `name`, in order.
    pub fn params<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.query
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.param(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if v == "true" || v == "1" || v.is_empty() => Ok(true),
            Some(v) if v == "false" || v == "0" => Ok(false),
            Some(v) => Err(ApiError::BadRequest(format!(
                "query parameter `{name}`: `{v}` is not true or false"
            ))),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Decodes `a=b&c=d` with percent-escapes and `+` as space, keeping order and repeats.
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes a query-string part: percent-escapes, and `+` as a space.
pub fn percent_decode(s: &str) -> String {
    decode(s, true)
}

/// Decodes a path segment: percent-escapes only (`+` is itself in a path).
pub fn percent_decode_segment(s: &str) -> String {
    decode(s, false)
}

fn decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Memory for request bodies being received, shared by all requests, in
/// KiB: a body reserves its declared length up front, or its size as it
/// grows, and waits while others hold the budget.
#[derive(Clone)]
pub struct BodyBudget(Arc<Semaphore>);

impl BodyBudget {
    pub fn new(bytes: usize) -> BodyBudget {
        BodyBudget(Arc::new(Semaphore::new(kib(bytes) as usize)))
    }

    /// Makes `held` cover `bytes`, waiting for the difference.
    async fn grow(
        &self,
        held: &mut Option<OwnedSemaphorePermit>,
        bytes: usize,
    ) -> Result<(), ApiError> {
        let have = held.as_ref().map_or(0, |p| p.num_permits() as u32);
        let more = kib(bytes).saturating_sub(have);
        if more == 0 {
            return Ok(());
        }
        let permit = self
            .0
            .clone()
            .acquire_many_owned(more)
            .await
            .map_err(|_| ApiError::Unavailable("shutting down".into()))?;
        match held.as_mut() {
            Some(h) => h.merge(permit),
            None => *held = Some(permit),
        }
        Ok(())
    }
}

fn kib(bytes: usize) -> u32 {
    bytes.div_ceil(1024).min(u32::MAX as usize) as u32
}

/// Reads a body of at most `limit` bytes (`declared` by Content-Length, if
/// it was) within `budget`; the permit it returns holds the body's share of
/// the budget until dropped.
pub async fn read_body<S, B>(
    stream: S,
    limit: usize,
    declared: Option<usize>,
    budget: &BodyBudget,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), ApiError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    let mut held: Option<OwnedSemaphorePermit> = None;
    if let Some(n) = declared.filter(|n| *n > 0) {
        budget.grow(&mut held, n).await?;
    }
    tokio::pin!(stream);
    let mut out = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = stream.next().await {
        let mut chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("cannot read request body: {e}")))?;
        let grown = out.len() + chunk.remaining();
        if grown > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        budget.grow(&mut held, grown).await?;
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            out.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok((out.freeze(), held))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query(
            "target=127.0.0.1%3A1161&live=true&x=a+b&bad=%zz&tail=%4&module=a&module=b%2Cc",
        );
        let request = Request {
            method: Method::GET,
            path: "/snmp".into(),
            query: q,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        assert_eq!(request.param("target"), Some("127.0.0.1:1161"));
        assert_eq!(request.param("live"), Some("true"));
        assert_eq!(request.param("x"), Some("a b"));
        assert_eq!(request.param("bad"), Some("%zz"));
        assert_eq!(request.param("tail"), Some("%4"));
        assert_eq!(request.params("module").collect::<Vec<_>>(), ["a", "b,c"]);
        assert_eq!(request.param("module"), Some("b,c"));
        assert_eq!(percent_decode_segment("rack+1%2Fsw%20a"), "rack+1/sw a");
    }

    fn body(
        parts: &[&'static [u8]],
    ) -> impl futures_util::Stream<Item = Result<Bytes, warp::Error>> {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn bodies_share_one_memory_budget() {
        let budget = BodyBudget::new(4096);
        let (first, held) = read_body(body(&[&[b'a'; 3000]]), 8192, Some(3000), &budget)
            .await
            .unwrap();
        assert_eq!(first.len(), 3000);
        // A chunked body (no length declared) grows into what is left, then waits.
        let second = read_body(body(&[&[b'b'; 1000], &[b'c'; 2000]]), 8192, None, &budget);
        let waited = tokio::time::timeout(Duration::from_millis(100), second).await;
        assert!(
            waited.is_err(),
            "the second body waits while the first holds the budget"
        );
        drop(held);
        let (second, _held) = read_body(body(&[&[b'b'; 1000], &[b'c'; 2000]]), 8192, None, &budget)
            .await
            .unwrap();
        assert_eq!(second.len(), 3000);
        let e = read_body(body(&[&[b'd'; 9000]]), 8192, None, &budget)
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::PayloadTooLarge(8192)), "{e}");
    }
}
