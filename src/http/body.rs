//! A response body that keeps its connection counted as busy until the body
//! has been sent (or dropped), so the connection cap never evicts a
//! connection in the middle of a response.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};

use super::connections::RequestGuard;

pub struct TrackedBody<B> {
    inner: B,
    _guard: RequestGuard,
}

impl<B> TrackedBody<B> {
    pub fn new(inner: B, guard: RequestGuard) -> Self {
        TrackedBody {
            inner,
            _guard: guard,
        }
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
