#!/usr/bin/env python3
"""mscat.py BEFORE.ms AFTER.ms N: live heap bytes per connection by component."""
import sys, collections
sys.path.insert(0, __import__('os').path.dirname(__file__))
from msdiff import leaves, key
RULES = [
  ('actix-http HTTP/1 read+write buffers', lambda s: 'bytes_mut.rs:162' in s and ('h1::dispatcher::Dispatcher' in s or 'HttpServiceHandler' in s)),
  ('session actor task (Session + Context + mailbox)', lambda s: 'LocalOwnedTasks' in s and 'ContextFut<souk::session::Session' in s),
  ('user-room actor task (Room + Context + mailbox)', lambda s: 'LocalOwnedTasks' in s and 'ContextFut<souk::rooms' in s),
  ('tokio task of the HTTP connection (h1 dispatcher future)', lambda s: 'LocalOwnedTasks' in s and 'StreamService' in s),
  ('actix Addr/Recipient senders', lambda s: 'AddressSenderProducer' in s or 'address::channel' in s),
  ('session timers (run_interval/run_later)', lambda s: 'souk::session' in s and ('run_later' in s or 'run_interval' in s)),
  ('WebSocket transport (actix-web-actors ctx, WsTransport, ws payload)', lambda s: 'actix_web_actors' in s or 'WsTransport' in s or 'websocket.rs' in s),
  ('actix-http other per-connection', lambda s: 'actix_http' in s),
  ('user room: members map', lambda s: 'members.rs' in s or 'rooms::room' in s),
  ('registry entries', lambda s: 'registry.rs' in s),
  ('record keeper', lambda s: 'records.rs' in s),
  ('presence', lambda s: 'presence' in s),
  ('directory', lambda s: 'directory.rs' in s),
  ('session other', lambda s: 'souk::session' in s),
  ('tokio I/O registration', lambda s: 'tokio::runtime::io' in s or 'registration_set' in s),
  ('redis client buffers', lambda s: 'redis::' in s),
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
