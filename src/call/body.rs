//! Reading a whole body, the caller's or a partner's, into one `Bytes`.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;
use smallvec::SmallVec;

/// Reads `body` to its end as one `Bytes`; trailers are dropped. A body that
/// came in one frame (a small one usually does) is that frame itself: no
/// copy, no allocation. (`http_body_util`'s `collect` queued every frame
/// in a `VecDeque` grown per body: two allocations a forwarded call.) More
/// frames are kept as they came and joined once at the end, as `collect`
/// does: a slow large body holds what it sent, not a buffer grown ahead.
pub async fn read_whole<B>(body: B) -> Result<Bytes, B::Error>
where
    B: Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut frames: SmallVec<[Bytes; 1]> = SmallVec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if !data.is_empty() {
                frames.push(data);
            }
        }
    }
    if frames.len() <= 1 {
        return Ok(frames.pop().unwrap_or_default());
    }
    let mut whole = BytesMut::with_capacity(frames.iter().map(Bytes::len).sum());
    for data in frames {
        whole.extend_from_slice(&data);
    }
    Ok(whole.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, Limited, StreamBody};
    use hyper::body::Frame;

    /// A body of these frames, sent as they come.
    fn frames(
        parts: Vec<Result<Frame<Bytes>, &'static str>>,
    ) -> impl Body<Data = Bytes, Error = &'static str> {
        StreamBody::new(futures_util::stream::iter(parts))
    }

    #[tokio::test]
    async fn one_frame_is_kept_as_it_came_and_many_are_joined_in_order() {
        let one = Bytes::from_static(b"{\"clientId\":\"c\"}");
        let read = read_whole(Full::new(one.clone())).await.unwrap();
        assert_eq!(
            (read.as_ptr(), read.len()),
            (one.as_ptr(), one.len()),
            "no copy"
        );

        let parts = ["", "{\"a\":", "", "1", ",\"b\":2}"];
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-t", http::HeaderValue::from_static("1"));
        let mut body: Vec<_> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        body.push(Ok(Frame::trailers(trailers)));
        let read = read_whole(frames(body)).await.unwrap();
        assert_eq!(&read[..], parts.concat().as_bytes());

        assert!(read_whole(frames(vec![])).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_error_or_a_limit_midway_is_the_answer() {
        let cut = frames(vec![
            Ok(Frame::data(Bytes::from_static(b"{\"a\""))),
            Err("reset"),
        ]);
        assert_eq!(read_whole(cut).await, Err("reset"));

        let big: Vec<_> = (0..4)
            .map(|_| Ok(Frame::data(Bytes::from_static(b"0123456789"))))
            .collect();
        let error = read_whole(Limited::new(frames(big), 25)).await.unwrap_err();
        assert!(
            error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some(),
            "{error}"
        );
    }
}
