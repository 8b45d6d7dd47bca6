"""The scaffolding the hand-written stand-ins share (hostile_http.py,
hostile_smtp.py, chaos_fakes.py): a listener on 127.0.0.1, one thread a
connection, a count of the connections accepted, and stop(), which closes
everything.  A subclass writes _serve(conn, n), n the connection's number
from 1; it may set conn_timeout (every accepted socket's, so a stuck
client never holds a thread for ever) and rcvbuf (the listener's receive
buffer, which accepted sockets inherit)."""

import socket
import threading


class Listener:
    conn_timeout = None
    rcvbuf = None

    def __init__(self):
        self.lock = threading.Lock()
        self.stopping = False
        self.conns = []
        self.connections = 0
        self.sock = None
        self.port = None
        self.thread = None

    def start(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF,
                                 self.rcvbuf)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopping = True
        if self.thread is not None:
            self.thread.join(5)
        if self.sock is not None:
            self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.conn_timeout is not None:
                conn.settimeout(self.conn_timeout)
            with self.lock:
                self.connections += 1
                n = self.connections
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, n),
                             daemon=True).start()

    def _serve(self, conn, n):
        raise NotImplementedError
