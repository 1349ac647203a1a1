"""An in-process stand-in for memcached in the test Swift proxy (servers.py): the proxy's
`swift.cache`, which tempauth requires and the proxy uses for account and container info. The
test proxy runs one process (workers = 0), so a dict is shared by every request. Values are kept
as memcache keeps them (JSON when serialized), so no caller sees another caller's object.

In the proxy's paste pipeline: [filter:cache] paste.filter_factory = sp_swift_cache:filter_factory
"""

import json
import threading
import time as _time

_MONTH = 30 * 24 * 3600  # memcache: an expiry above this is a Unix time, not a duration


class DictCache:
    def __init__(self):
        self._lock = threading.Lock()
        self._data = {}

    def _expiry(self, ttl):
        ttl = int(ttl or 0)
        if ttl <= 0:
            return None
        return ttl if ttl > _MONTH else _time.time() + ttl

    def _live(self, key):
        item = self._data.get(key)
        if item is not None and item[1] is not None and item[1] <= _time.time():
            del self._data[key]
            return None
        return item

    def set(self, key, value, serialize=True, time=0, min_compress_len=0, raise_on_error=False):
        stored = (json.dumps(value), True) if serialize else (value, False)
        with self._lock:
            self._data[key] = (stored, self._expiry(time))

    def get(self, key, raise_on_error=False):
        with self._lock:
            item = self._live(key)
        if item is None:
            return None
        value, serialized = item[0]
        return json.loads(value) if serialized else value

    def incr(self, key, delta=1, time=0):
        with self._lock:
            item = self._live(key)
            current = int(item[0][0]) if item is not None else 0
            value = max(0, current + int(delta))
            self._data[key] = ((str(value).encode(), False),
                               item[1] if item is not None else self._expiry(time))
        return value

    def decr(self, key, delta=1, time=0):
        return self.incr(key, -int(delta), time)

    def delete(self, key, server_key=None):
        with self._lock:
            self._data.pop(key, None)

    def set_multi(self, mapping, server_key, serialize=True, time=0, min_compress_len=0):
        for key, value in mapping.items():
            self.set(key, value, serialize, time)

    def get_multi(self, keys, server_key):
        return [self.get(key) for key in keys]


def filter_factory(global_conf, **local_conf):
    cache = DictCache()

    def cache_filter(app):
        def middleware(env, start_response):
            env["swift.cache"] = cache
            return app(env, start_response)
        return middleware

    return cache_filter
