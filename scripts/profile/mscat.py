#!/usr/bin/env python3
"""mscat.py BEFORE.ms AFTER.ms N: live heap bytes per connection by component."""
import sys, collections
sys.path.insert(0, __import__('os').path.dirname(__file__))
from msdiff import leaves, key
RULES = [
  # Tasks first: each is one allocation, named by what spawned it.
  ('session actor task (Session + Context + mailbox)', lambda s: 'LocalOwnedTasks' in s and ('ContextFut<souk::session::Session' in s or 'open_session' in s)),
  ('user-room actor task (Room + Context + mailbox)', lambda s: 'LocalOwnedTasks' in s and 'ContextFut<souk::rooms' in s),
  ('WebSocket connection task (the engine\'s, after the upgrade)', lambda s: 'LocalOwnedTasks' in s and 'engine::eio::websocket::open' in s),
  ('actix-http h1 connection task (polling and other HTTP requests)', lambda s: 'LocalOwnedTasks' in s and 'StreamService' in s),
  ('actix Addr/Recipient senders', lambda s: 'AddressSenderProducer' in s or 'address::channel' in s),
  ('tokio I/O registration', lambda s: 'tokio::runtime::io' in s or 'registration_set' in s),
  ('actix-http HTTP/1 buffers (with line tables)', lambda s: 'bytes_mut.rs:162' in s and ('h1::dispatcher::Dispatcher' in s or 'HttpServiceHandler' in s)),
  ('actix-http: a kept request head (its header bytes pin the read buffer)', lambda s: 'h1::codec::Codec' in s),
  ('engine: transport, link, long-polling queue', lambda s: 'souk::engine' in s),
  ('actix-http other per-connection (dispatcher buffers without line tables)', lambda s: 'actix_http' in s or 'StreamService' in s),
  ('user room: members map', lambda s: 'members.rs' in s or 'rooms::room' in s),
  ('registry entries', lambda s: 'registry.rs' in s or 'rooms::registry' in s),
  ('record keeper', lambda s: 'records.rs' in s or 'broker::records' in s),
  ('presence', lambda s: 'presence' in s),
  ('directory', lambda s: 'directory.rs' in s or 'session::directory' in s),
  ('timers (one queue per thread)', lambda s: 'souk::timers' in s),
  ('session other', lambda s: 'souk::session' in s),
  ('redis client buffers (growth during bursts; not per connection at rest)', lambda s: 'redis::' in s),
  ('below threshold', lambda s: 'below massif' in s),
]
def cat(frames):
    s = ' | '.join(frames)
    for name, rule in RULES:
        if rule(s): return name
    return 'other'
before, after, n = leaves(sys.argv[1]), leaves(sys.argv[2]), int(sys.argv[3])
verbose = len(sys.argv) > 4
tot = collections.Counter(); sites = collections.defaultdict(collections.Counter)
for sign, snap in ((1, after), (-1, before)):
    for frames, size in snap.items():
        c = cat(frames); tot[c] += sign*size; sites[c][key(frames, 7)] += sign*size
print(f'total {sum(tot.values())/n:.0f} B per connection')
for c, v in tot.most_common():
    print(f'{v/n:8.0f}  {c}')
    if verbose:
        for k, w in sites[c].most_common(4):
            if abs(w)/n >= 8: print(f'          {w/n:6.0f}  {k[:700]}')
