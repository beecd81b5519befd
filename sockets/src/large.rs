//! Large reply bodies (the database of a `D`, the block of a `B`), handed to
//! libzmq without a copy and counted for as long as anything holds them.
//!
//! libzmq bounds its queues in messages, not bytes, and frees a queued reply
//! only once it has been written to the client or the client has gone. A
//! client that asks for the database and never reads would otherwise hold
//! a copy of it per request, up to the send queue's length. So a large body
//! is a [`Body`]: its length is added to a [`Gauge`] when it is made and
//! taken off when the last holder lets go of it (a cache, a reply in a
//! channel, or a message that libzmq still queues, whose free function
//! drops its share). The ledger reads the gauge and refuses new large
//! replies while it is over the limit, so the bytes held are bounded by a
//! setting however many clients stop reading. One body backs any number of
//! messages: every `D` answered from one committed database shares it, so a
//! flood of `D` costs neither a copy nor memory per request.
//!
//! [`send`] is the crate's only `unsafe` code: the zmq crate makes a
//! zero-copy message only from a `Box<[u8]>` it owns alone, with no way to
//! share it or to learn when libzmq frees it, so the message is built with
//! `zmq_msg_init_data` and a free function of our own, and sent with
//! `zmq_msg_send`.

use std::os::raw::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The bytes of every live [`Body`] made with this gauge.
#[derive(Debug, Default)]
pub struct Gauge {
    bytes: AtomicU64,
}

impl Gauge {
    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// An immutable large reply body, counted on its gauge while it lives.
#[derive(Debug)]
pub struct Body {
    bytes: Box<[u8]>,
    gauge: Arc<Gauge>,
}

impl Body {
    /// Takes `bytes` (no copy) and counts them on `gauge`.
    pub fn new(bytes: Vec<u8>, gauge: &Arc<Gauge>) -> Arc<Body> {
        let bytes = bytes.into_boxed_slice();
        gauge.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Arc::new(Body {
            bytes,
            gauge: gauge.clone(),
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        self.gauge
            .bytes
            .fetch_sub(self.bytes.len() as u64, Ordering::Relaxed);
    }
}

/// Called by libzmq, on whichever thread closes the message last, once
/// per message made by [`send`]: drops that message's share of the body.
unsafe extern "C" fn release(_data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the pointer `Arc::into_raw` returned in `send`, for
    // this message alone, and libzmq calls this function exactly once per
    // message, so the share is taken back exactly once. `Body` is
    // `Send + Sync`, so dropping it on libzmq's I/O thread is sound.
    drop(unsafe { Arc::from_raw(hint as *const Body) });
}

/// Sends `body` as one frame on `socket`, without copying it: the message
/// libzmq queues holds a share of the body until libzmq frees it. `flags`
/// are `zmq_msg_send`'s (`DONTWAIT`, `SNDMORE`), as for [`zmq::Socket::send`].
pub fn send(socket: &mut zmq::Socket, body: &Arc<Body>, flags: i32) -> zmq::Result<()> {
    if body.is_empty() {
        // libzmq makes an empty message without calling a free function.
        return socket.send(zmq::Message::new(), flags);
    }
    let mut raw = zmq_sys::zmq_msg_t::default();
    let share = Arc::into_raw(body.clone());
    // SAFETY: `raw` is a message structure of our own, not yet initialised.
    // The data pointer stays valid and unchanged until `release` runs,
    // because the share given as the hint keeps the body, and its boxed
    // bytes, alive; libzmq only reads the data of a message it sends.
    let made = unsafe {
        zmq_sys::zmq_msg_init_data(
            &mut raw,
            body.bytes.as_ptr() as *mut c_void,
            body.len(),
            Some(release),
            share as *mut c_void,
        )
    };
    if made != 0 {
        // libzmq could not allocate the message's 40-byte header, so it
        // never registered `release`: take the share back here.
        // SAFETY: `share` came from `Arc::into_raw` above and nothing else
        // will take it back.
        drop(unsafe { Arc::from_raw(share) });
        return Err(last_error());
    }
    // SAFETY: `raw` is initialised and `socket.as_mut_ptr()` is an open
    // socket that this thread owns. On success libzmq takes the message
    // (and will call `release`); on failure it is still ours, and closing
    // it calls `release`.
    unsafe {
        if zmq_sys::zmq_msg_send(&mut raw, socket.as_mut_ptr(), flags) >= 0 {
            return Ok(());
        }
        let error = last_error();
        zmq_sys::zmq_msg_close(&mut raw);
        Err(error)
    }
}

fn last_error() -> zmq::Error {
    // SAFETY: reads libzmq's errno of this thread; no pointers involved.
    zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_counted_while_it_lives() {
        let gauge = Arc::new(Gauge::default());
        let body = Body::new(vec![7; 1000], &gauge);
        let other = Body::new(vec![1; 24], &gauge);
        assert_eq!(gauge.bytes(), 1024);
        drop(body);
        assert_eq!(gauge.bytes(), 24);
        drop(other);
        assert_eq!(gauge.bytes(), 0);
    }

    fn pair(ctx: &zmq::Context, name: &str) -> (zmq::Socket, zmq::Socket) {
        let endpoint = format!("inproc://rota-large-{name}");
        let receiver = ctx.socket(zmq::PAIR).unwrap();
        receiver.set_linger(0).unwrap();
        receiver.bind(&endpoint).unwrap();
        let sender = ctx.socket(zmq::PAIR).unwrap();
        sender.set_linger(0).unwrap();
        sender.connect(&endpoint).unwrap();
        (sender, receiver)
    }

    #[test]
    fn queued_messages_share_the_body_until_libzmq_frees_them() {
        let ctx = zmq::Context::new();
        let (mut sender, receiver) = pair(&ctx, "share");
        let gauge = Arc::new(Gauge::default());
        let body = Body::new(vec![9; 100_000], &gauge);
        sender.send("head", zmq::SNDMORE).unwrap();
        send(&mut sender, &body, 0).unwrap();
        send(&mut sender, &body, 0).unwrap();
        assert_eq!(Arc::strong_count(&body), 3, "shared, not copied");
        drop(body);
        assert_eq!(gauge.bytes(), 100_000, "held by the queue");
        let frames = receiver.recv_multipart(0).unwrap();
        assert_eq!(frames, vec![b"head".to_vec(), vec![9; 100_000]]);
        assert_eq!(gauge.bytes(), 100_000, "one message still queued");
        drop(receiver);
        drop(sender);
        drop(ctx);
        assert_eq!(gauge.bytes(), 0, "freed with the queue");
    }

    #[test]
    fn a_message_that_cannot_be_sent_lets_go_at_once() {
        let ctx = zmq::Context::new();
        let mut lonely = ctx.socket(zmq::DEALER).unwrap();
        lonely.set_linger(0).unwrap();
        let gauge = Arc::new(Gauge::default());
        let body = Body::new(vec![1; 10], &gauge);
        let sent = send(&mut lonely, &body, zmq::DONTWAIT);
        assert_eq!(sent, Err(zmq::Error::EAGAIN), "no peer to queue for");
        assert_eq!(Arc::strong_count(&body), 1);
    }

    #[test]
    fn an_empty_body_is_an_empty_frame() {
        let ctx = zmq::Context::new();
        let (mut sender, receiver) = pair(&ctx, "empty");
        let gauge = Arc::new(Gauge::default());
        let body = Body::new(Vec::new(), &gauge);
        send(&mut sender, &body, 0).unwrap();
        assert_eq!(receiver.recv_bytes(0).unwrap(), Vec::<u8>::new());
        assert_eq!(Arc::strong_count(&body), 1);
    }
}
