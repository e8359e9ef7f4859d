"""The floor under any WebSocket library on gevent pywsgi: ``python pywsgi_floor.py PORT``

Not a usable server.  It does the least WebSocket work a benchmark client accepts (the
101, unmasking and echoing whole frames, answering a Close) in a few lines over the
socket pywsgi hands an upgrade request, with no checks at all, in the request's own
greenlet, with pywsgi's request reader closed (a library need not keep its buffer).
What it costs per connection (memory, connection rate) is what gevent pywsgi itself
costs when a connection is served that way.
"""

import base64
import errno
import hashlib
import struct
import sys

from gevent import monkey

monkey.patch_all()

from gevent.pywsgi import WSGIServer  # noqa: E402

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Done(Exception):
    pass


def app(environ, start_response):
    sock = environ["wsgi.input"].raw._sock
    environ["wsgi.input"].close()  # the socket stays open; its reader's 8 KiB buffer goes
    key = environ["HTTP_SEC_WEBSOCKET_KEY"].encode()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    buf = b""
    while True:
        data = sock.recv(65536)
        if not data:
            break
        buf += data
        while len(buf) >= 6:
            first, size = buf[0], buf[1] & 0x7F
            head = 6 if size < 126 else 8 if size == 126 else 14
            if size == 126:
                (size,) = struct.unpack_from("!H", buf, 2)
            elif size == 127:
                (size,) = struct.unpack_from("!Q", buf, 2)
            if len(buf) < head + size:
                break
            key, payload = buf[head - 4:head], bytearray(buf[head:head + size])
            buf = buf[head + size:]
            for i in range(size):
                payload[i] ^= key[i & 3]
            length = (bytes([size]) if size < 126 else b"\x7e" + struct.pack("!H", size)
                      if size < 65536 else b"\x7f" + struct.pack("!Q", size))
            sock.sendall(bytes([first]) + length + payload)
            if first & 0x0F == 8:  # the Close is echoed: done, FIN, then wait for the peer's
                sock.shutdown(1)
                while sock.recv(65536):
                    pass
                raise Done
    raise Done


def quiet(environ, start_response):
    try:
        return app(environ, start_response)
    except (Done, OSError):
        raise BrokenPipeError(errno.EPIPE, "done")  # pywsgi then writes nothing more


if __name__ == "__main__":
    WSGIServer(("127.0.0.1", int(sys.argv[1])), quiet, log=None).serve_forever()
