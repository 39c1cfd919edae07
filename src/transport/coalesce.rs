//! One socket write per response: a server connection that holds back the
//! write HTTP/2 makes for a body chunk until the frames after it are there.
//!
//! Why: h2 does not copy a DATA payload of 256 bytes or more into its write
//! buffer; it flushes it (a `writev`) before it takes the next frame. So a
//! gRPC response with such a message (a page of similar content, metric
//! buckets, a batch of permission answers) went out as two writes, the
//! headers and message, then the 10-byte trailers: a second syscall here,
//! and a second read in the client (strace, BENCHMARKS.md).
//!
//! Here every write is copied (a response is a few KB) and goes to the
//! socket when h2 flushes, except a flush that comes right after a body
//! chunk: that one is answered at once and its bytes are kept. h2 ends each
//! turn of its connection task with a flush, so they leave with the
//! trailers (or whatever follows) in that same turn. For a writer that
//! would not flush again, the task wakes itself, and the next read, write
//! or flush on the connection sends them first: nothing waits on the peer.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Past this many bytes held, writes wait for the socket (backpressure).
const MAX_HELD: usize = 256 * 1024;

/// Buffer capacity a connection keeps between writes.
const KEPT_CAPACITY: usize = 64 * 1024;

pub struct CoalescedWrites<T> {
    io: T,
    /// Off (`AFFINITY_COALESCE_WRITES=false`): every call goes straight to
    /// the socket.
    enabled: bool,
    /// Bytes handed over by the caller and not yet on the socket.
    held: Vec<u8>,
    /// How much of `held` the socket has taken.
    written: usize,
    /// The last write came in two or more parts: h2 flushing a body chunk
    /// it did not copy, with more frames likely to follow.
    chunked: bool,
    /// A flush was answered without writing; the next call writes first.
    deferred: bool,
}

impl<T> CoalescedWrites<T> {
    /// `io` whose writes are coalesced when `enabled`, else passed through.
    pub fn new(io: T, enabled: bool) -> Self {
        CoalescedWrites {
            io,
            enabled,
            held: Vec::new(),
            written: 0,
            chunked: false,
            deferred: false,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: AsyncWrite + Unpin> CoalescedWrites<T> {
    /// Writes what is held, until done or the socket is full.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.held.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.held[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        // A burst's buffer is not kept for an idle connection.
        if self.held.capacity() > KEPT_CAPACITY {
            self.held = Vec::new();
        } else {
            self.held.clear();
        }
        self.written = 0;
        self.deferred = false;
        Poll::Ready(Ok(()))
    }

    fn hold(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        if self.held.len() >= MAX_HELD {
            ready!(self.poll_drain(cx))?;
        }
        let room = MAX_HELD - self.held.len();
        let mut taken = 0;
        let mut parts = 0;
        for b in bufs {
            if b.is_empty() {
                continue;
            }
            parts += 1;
            let n = b.len().min(room - taken);
            self.held.extend_from_slice(&b[..n]);
            taken += n;
            if taken == room {
                break;
            }
        }
        self.chunked = parts >= 2;
        Poll::Ready(Ok(taken))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for CoalescedWrites<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        // Held bytes go out before the connection waits for the peer, which
        // may be waiting for them. A full socket wakes this task when it
        // drains (the write interest is registered), so reading goes on.
        if me.deferred {
            if let Poll::Ready(Err(e)) = me.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut me.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CoalescedWrites<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.enabled {
            return Pin::new(&mut self.io).poll_write(cx, buf);
        }
        self.hold(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if !self.enabled {
            return Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        }
        self.hold(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.enabled || self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = &mut *self;
        if me.chunked && !me.deferred && me.written < me.held.len() {
            // A body chunk h2 flushed on its own: its trailers (or next
            // frames) usually follow in this same poll. The task is woken so
            // that it polls again, and that poll's first read, write or flush
            // sends these bytes if nothing else has.
            me.chunked = false;
            me.deferred = true;
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(me.poll_drain(cx))?;
        Pin::new(&mut me.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = &mut *self;
        ready!(me.poll_drain(cx))?;
        Pin::new(&mut me.io).poll_shutdown(cx)
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected
    for CoalescedWrites<T>
{
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    use super::*;

    /// A socket that records each write it is given and has nothing to read.
    #[derive(Default)]
    struct Socket {
        writes: Vec<Vec<u8>>,
        /// Takes at most this many bytes per write (0: any number).
        max_write: usize,
        /// Says it is full (Pending) to this many writes first.
        full_for: usize,
    }

    impl AsyncRead for Socket {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for Socket {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.full_for > 0 {
                self.full_for -= 1;
                return Poll::Pending;
            }
            let n = match self.max_write {
                0 => buf.len(),
                m => buf.len().min(m),
            };
            self.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Counts the wake-ups of the task.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Harness {
        conn: CoalescedWrites<Socket>,
        wakes: Arc<Wakes>,
        waker: Waker,
    }

    impl Harness {
        fn new(socket: Socket) -> Self {
            let wakes = Arc::new(Wakes::default());
            Harness {
                conn: CoalescedWrites::new(socket, true),
                waker: Waker::from(wakes.clone()),
                wakes,
            }
        }
        /// Calls `f` on the connection as the task with the counting waker.
        fn call<R>(
            &mut self,
            f: impl FnOnce(Pin<&mut CoalescedWrites<Socket>>, &mut Context<'_>) -> R,
        ) -> R {
            let waker = self.waker.clone();
            f(Pin::new(&mut self.conn), &mut Context::from_waker(&waker))
        }
        /// h2 writing a frame head and the body chunk it did not copy.
        fn write_chunk(&mut self, head: &[u8], chunk: &[u8]) {
            let parts = [IoSlice::new(head), IoSlice::new(chunk)];
            let n = self.call(|c, cx| c.poll_write_vectored(cx, &parts));
            assert!(matches!(n, Poll::Ready(Ok(n)) if n == head.len() + chunk.len()));
        }
        fn write(&mut self, bytes: &[u8]) {
            let n = self.call(|c, cx| c.poll_write(cx, bytes));
            assert!(matches!(n, Poll::Ready(Ok(n)) if n == bytes.len()));
        }
        fn flush(&mut self) -> Poll<io::Result<()>> {
            self.call(|c, cx| c.poll_flush(cx))
        }
        fn read(&mut self) -> Poll<io::Result<()>> {
            let mut space = [0u8; 16];
            self.call(|c, cx| c.poll_read(cx, &mut ReadBuf::new(&mut space)))
        }
        fn writes(&self) -> &[Vec<u8>] {
            &self.conn.get_ref().writes
        }
        fn woken(&self) -> usize {
            self.wakes.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn a_body_chunk_and_the_trailers_after_it_leave_in_one_write() {
        let mut h = Harness::new(Socket::default());
        h.write_chunk(b"HEADERS+DATA head|", &[7u8; 300]);
        assert!(matches!(h.flush(), Poll::Ready(Ok(()))));
        assert!(h.writes().is_empty(), "the chunk was written on its own");
        assert_eq!(
            h.woken(),
            1,
            "the task must poll again to send what it holds"
        );
        h.write(b"|trailers");
        assert!(matches!(h.flush(), Poll::Ready(Ok(()))));
        let mut want = b"HEADERS+DATA head|".to_vec();
        want.extend_from_slice(&[7u8; 300]);
        want.extend_from_slice(b"|trailers");
        assert_eq!(h.writes(), &[want][..]);
    }

    #[test]
    fn a_held_chunk_with_nothing_after_it_goes_out_at_the_next_read() {
        let mut h = Harness::new(Socket::default());
        h.write_chunk(b"head|", b"a streamed message");
        assert!(matches!(h.flush(), Poll::Ready(Ok(()))));
        assert!(h.writes().is_empty());
        // The poll the task woke itself for: h2 reads first.
        assert!(h.read().is_pending());
        assert_eq!(h.writes(), &[b"head|a streamed message".to_vec()][..]);
    }

    #[test]
    fn a_write_in_one_part_is_flushed_at_once() {
        let mut h = Harness::new(Socket::default());
        h.write(b"HEADERS+DATA+trailers of a small answer");
        assert!(matches!(h.flush(), Poll::Ready(Ok(()))));
        assert_eq!(h.writes().len(), 1);
        assert_eq!(h.woken(), 0);
    }

    #[test]
    fn a_full_socket_keeps_the_flush_pending_until_every_byte_is_written() {
        let mut h = Harness::new(Socket {
            max_write: 4,
            full_for: 1,
            ..Socket::default()
        });
        h.write(b"0123456789");
        assert!(h.flush().is_pending());
        assert!(matches!(h.flush(), Poll::Ready(Ok(()))));
        assert_eq!(h.writes().concat(), b"0123456789".to_vec());
    }

    #[test]
    fn writes_wait_for_a_full_socket_once_a_quarter_megabyte_is_held() {
        let mut h = Harness::new(Socket {
            full_for: usize::MAX,
            ..Socket::default()
        });
        h.write(&vec![1u8; MAX_HELD]);
        assert!(h.call(|c, cx| c.poll_write(cx, b"more")).is_pending());
        assert!(h.flush().is_pending());
    }

    #[test]
    fn shutting_down_writes_what_is_held_first() {
        let mut h = Harness::new(Socket::default());
        h.write_chunk(b"head|", b"last message");
        assert!(matches!(h.flush(), Poll::Ready(Ok(()))));
        assert!(matches!(
            h.call(|c, cx| c.poll_shutdown(cx)),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(h.writes(), &[b"head|last message".to_vec()][..]);
    }
}
