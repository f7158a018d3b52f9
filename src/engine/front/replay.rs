//! A connection handed to the HTTP server after the front door read part of
//! it: what was read is read again first, then the socket itself.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::rt::net::TcpStream;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A socket with the bytes already read from it in front.
pub struct Replay {
    read: BytesMut,
    stream: TcpStream,
}

impl Replay {
    pub fn new(read: BytesMut, stream: TcpStream) -> Self {
        Replay { read, stream }
    }

    /// What is still to replay, and the socket.
    pub fn into_parts(self) -> (BytesMut, TcpStream) {
        (self.read, self.stream)
    }
}

impl AsyncRead for Replay {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.is_empty() {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        let n = this.read.len().min(buf.remaining());
        buf.put_slice(&this.read[..n]);
        this.read.advance(n);
        if this.read.is_empty() {
            // Keep nothing once replayed.
            this.read = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[actix_web::test]
    async fn what_was_read_comes_first_then_the_socket() {
        let (mut client, stream) = super::super::tests::socket_pair().await;
        let written = async {
            client.write_all(b"rest").await?;
            client.shutdown().await
        };
        assert!(written.await.is_ok(), "the client wrote");
        let mut replay = Replay::new(BytesMut::from(&b"read "[..]), stream);
        let mut all = String::new();
        let read = replay.read_to_string(&mut all).await;
        assert!(read.is_ok(), "{read:?}");
        assert_eq!(all, "read rest");
        assert!(replay.read.capacity() == 0, "nothing kept once replayed");
    }
}
