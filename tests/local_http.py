"""A real HTTP server on 127.0.0.1, in a thread, for download tests."""

import functools
import http.server
import threading


class QuietHandler(http.server.SimpleHTTPRequestHandler):
  """Serves files (with Range support from the standard library) quietly."""

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
