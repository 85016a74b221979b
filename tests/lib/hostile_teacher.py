#!/usr/bin/python3
"""A hostile OpenAI-compatible teacher on loopback, for tests (not a test itself).

    hostile_teacher.py PORTFILE [--log-headers FILE]

Binds 127.0.0.1 on a free port, writes the port to PORTFILE, and serves POST
/<mode>/v1/chat/completions, the mode picking the attack (the client's teacher.url is
http://127.0.0.1:PORT/<mode>/v1):
  ok             a valid answer (the baseline)
  utf8_200       200 whose "content" holds raw invalid UTF-8 (0xFF 0xFE)
  utf8_500       500 whose body is invalid UTF-8
  nul            200 with content "Hello \\u0000 world"
  retry_after    429 with Retry-After: 100000
  gzip_bomb      200, Content-Encoding: gzip, 200 MB of JSON once decoded (about 200 KB sent)
  chunked_1g     200, chunked, a JSON string that runs on for 1 GB (stops when the client hangs up)
  big_plain      200, Content-Length 50 MB, a valid answer whose content is 50 MB of text
  mix            each request the next of: ok, utf8_200, utf8_500, nul, retry_after, gzip_bomb,
                 chunked_1g, big_plain (a retry may get a good answer, as from a flaky server)
Every loop is bounded (the 1 GB body by its size, the server by SIGTERM from the test).
"""
import http.server
import json
import socketserver
import sys
import threading
import zlib

MB = 1 << 20
HEADER_LOG = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--log-headers" else None


def answer(content):
    return json.dumps({"id": "x", "object": "chat.completion", "model": "hostile",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": content}}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()


_bomb = None


def gzip_bomb():
    """200 MB of a JSON answer, gzip-compressed once (streamed through zlib: 1 MB at a time)."""
    global _bomb
    if _bomb is None:
        z = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip container
        head, tail = answer("@@").split(b"@@")
        parts = [z.compress(head)]
        block = b"A" * MB
        for _ in range(200):
            parts.append(z.compress(block))
        parts.append(z.compress(tail))
        parts.append(z.flush())
        _bomb = b"".join(parts)
    return _bomb


_plain = None
MIX = ["ok", "utf8_200", "utf8_500", "nul", "retry_after", "gzip_bomb", "chunked_1g", "big_plain"]
_count = 0
_lock = threading.Lock()


def big_plain():
    global _plain
    if _plain is None:
        _plain = answer("word " * (10 * MB))
    return _plain


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, body, headers=()):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        if n > 64 * MB:
            self.send(413, b"{}")
            return
        self.rfile.read(n)
        if HEADER_LOG:
            with open(HEADER_LOG, "a") as f:
                f.write("".join("%s: %s\n" % (k, v) for k, v in self.headers.items()))
        mode = self.path.strip("/").split("/")[0]
        if mode == "mix":
            global _count
            with _lock:
                mode = MIX[_count % len(MIX)]
                _count += 1
        try:
            if mode == "ok":
                self.send(200, answer("The weather in Paris is sunny."))
            elif mode == "utf8_200":
                self.send(200, answer("@@").replace(b"@@", b"bad \xff\xfe bytes"))
            elif mode == "utf8_500":
                self.send(500, b'{"error":{"message":"broken \xff\xfe\xc3 server"}}')
            elif mode == "nul":
                self.send(200, answer("Hello \u0000 world"))
            elif mode == "retry_after":
                self.send(429, b'{"error":{"message":"slow down"}}', [("Retry-After", "100000")])
            elif mode == "gzip_bomb":
                self.send(200, gzip_bomb(), [("Content-Encoding", "gzip")])
            elif mode == "big_plain":
                self.send(200, big_plain())
            elif mode == "chunked_1g":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                head = answer("@@").split(b"@@")[0]
                chunk = b"B" * MB
                self.wfile.write(b"%x\r\n%s\r\n" % (len(head), head))
                for _ in range(1024):  # 1 GB at most
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send(404, b'{"error":{"message":"unknown mode"}}')
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    srv = S(("127.0.0.1", 0), H)
    gzip_bomb()  # both made before the port is announced, so no request waits for them
    big_plain()
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    srv.serve_forever()


if __name__ == "__main__":
    main()
