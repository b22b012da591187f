"""A real HTTP server on 127.0.0.1, in a thread, for download tests."""

import functools
import http.server
import os
import re
import threading


class QuietHandler(http.server.SimpleHTTPRequestHandler):
  """Serves files quietly (whole files only: no Range support)."""

  def log_message(self, *args):
    del args


class LocalHttpServer:
  """Serves directory `root` on 127.0.0.1 at `self.url` until `stop()`."""

  def __init__(self, root, handler=QuietHandler):
    self.root = root
    bound = functools.partial(handler, directory=str(root))
    self._httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), bound)
    self.url = f'http://127.0.0.1:{self._httpd.server_address[1]}'
    self._thread = threading.Thread(target=self._httpd.serve_forever,
                                    daemon=True)
    self._thread.start()
    self._running = True

  def stop(self):
    if self._running:
      self._running = False
      self._httpd.shutdown()
      self._httpd.server_close()
      self._thread.join()


class RangeHandler(QuietHandler):
  """Like `QuietHandler`, and answers one-range `Range: bytes=...` requests.

  Supports `bytes=a-b`, `bytes=a-` and the suffix form `bytes=-n` with
  `206 Partial Content` and `Content-Range`; an unsatisfiable range gets
  `416`; a header it does not understand (several ranges, other units) is
  ignored and the whole file is sent, as RFC 9110 allows. Every file
  response (GET and HEAD) carries `Content-Length` and `Accept-Ranges`.
  """

  _remaining = None

  def send_head(self):
    path = self.translate_path(self.path)
    if os.path.isdir(path):
      return super().send_head()
    try:
      source = open(path, 'rb')
    except OSError:
      self.send_error(404, 'File not found')
      return None
    size = os.fstat(source.fileno()).st_size
    byte_range = _parse_byte_range(self.headers.get('Range'), size)
    if byte_range == _UNSATISFIABLE:
      source.close()
      self.send_response(416)
      self.send_header('Content-Range', f'bytes */{size}')
      self.send_header('Content-Length', '0')
      self.end_headers()
      return None
    if byte_range is None:
      start, end = 0, size - 1
      self.send_response(200)
    else:
      start, end = byte_range
      self.send_response(206)
      self.send_header('Content-Range', f'bytes {start}-{end}/{size}')
    source.seek(start)
    self._remaining = end - start + 1
    self.send_header('Content-Type', self.guess_type(path))
    self.send_header('Content-Length', str(self._remaining))
    self.send_header('Accept-Ranges', 'bytes')
    self.end_headers()
    return source

  def copyfile(self, source, outputfile):
    if self._remaining is None:
      return super().copyfile(source, outputfile)
    while self._remaining > 0:
      chunk = source.read(min(self._remaining, 1 << 16))
      if not chunk:
        break
      outputfile.write(chunk)
      self._remaining -= len(chunk)
    return None


_UNSATISFIABLE = 'unsatisfiable'


def _parse_byte_range(header, size):
  """`(first, last)` inclusive, None (send all) or `_UNSATISFIABLE`."""
  match = re.fullmatch(r'bytes=(\d*)-(\d*)', (header or '').strip())
  if match is None or match.groups() == ('', ''):
    return None
  first, last = match.groups()
  if not first:
    suffix = int(last)
    if suffix == 0 or size == 0:
      return _UNSATISFIABLE
    return max(0, size - suffix), size - 1
  first = int(first)
  last = min(int(last), size - 1) if last else size - 1
  if first >= size or last < first:
    return _UNSATISFIABLE
  return first, last
