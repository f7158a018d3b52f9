#!/usr/bin/env python3
"""perfcat.py SCRIPT: perf script samples (comm,tid,ip,sym,dso) grouped two ways:
by what the sampled code does (the innermost frame's kind) and by which handler it runs under."""
import sys, collections
def samples(path):
    stack = None
    for line in open(path):
        if not line.strip():
            if stack is not None: yield stack
            stack = None; continue
        if not line.startswith('\t') and not line.startswith(' '):
            stack = []; continue
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and stack is not None: stack.append(parts[1])
    if stack: yield stack
def has(stack, *words):
    return any(w in f for f in stack for w in words)
def work(stack):
    top = stack[0] if stack else ''
    s = stack
    if has(s, '__sys_sendto', 'sys_sendmsg', 'sys_writev', 'sys_write'): return 'kernel: socket writes (sendto, incl. loopback delivery to the client)'
    if has(s, 'sys_recvfrom', 'sys_read', 'sys_recvmsg'): return 'kernel: socket reads'
    if has(s, 'epoll_wait', 'sys_epoll'): return 'kernel: epoll_wait'
    if has(s, 'futex', 'sched_yield', 'sys_nanosleep'): return 'kernel: futex/wakeups between threads'
    if '[kernel' in top: return 'kernel: other (interrupts, softirq, scheduler)'
    if has([top], 'malloc', 'free', 'realloc', 'cfree', '_int_'): return 'allocator (malloc/free)'
    if has([top], 'memmove', 'memcpy', 'memset'): return 'memcpy'
    if has([top], 'actix::address', 'actix::context', 'actix::mailbox', 'ContextFut', 'EnvelopeProxy', 'AtomicWaker', 'pop_spin', 'Queue<'): return 'actix mailbox/context machinery'
    if has([top], 'tokio::runtime', 'tokio::task', 'LocalSet', 'tokio::time', 'Sleep', 'Wheel', 'tokio::sync'): return 'tokio scheduler/timers'
    if has([top], 'redis::', 'combine::'): return 'redis client (parse)'
    if has([top], 'serde_json', 'souk::protocol', 'ws::codec', 'Parser::write', 'actix_http::ws'): return 'encode/decode (JSON, WS frames)'
    if has([top], 'actix_http', 'actix_web', 'actix_server'): return 'actix-http/web (dispatcher, body stream)'
    if has([top], 'souk::'): return 'souk code (self)'
    return 'other: ' + top[:80]
def under(stack):
    s = stack
    if has(s, 'Handler<souk::rooms::room::Broadcast>'): return 'room actor: Broadcast (each member: mailslot, queue push, wake)'
    if has(s, 'souk::engine::websocket::connection'): return 'WebSocket connection task (take the queue, vectored write, read)'
    if has(s, 'Handler<souk::rooms::Deliver>'): return 'session actor: Deliver (dedupe, queue, wake transport)'
    if has(s, 'WsTransport'): return 'WsTransport actor (Drain: frame encode into actix-http write buffer)'
    if has(s, 'h1::dispatcher'): return 'actix-http h1 dispatcher (poll_flush: sendto; reads)'
    if has(s, 'Handler<souk::broker::Arrival>', 'Registry as actix::handler::Handler<souk::broker'): return 'registry: Arrival -> room'
    if has(s, 'redis::', 'souk::broker::redis'): return 'Redis subscriber/publisher'
    if has(s, 'souk::api', 'souk::broker::fanout'): return 'HTTP API publish + fanout'
    if has(s, 'tokio::runtime::time', 'Sleep', 'Wheel'): return 'timers'
    if has(s, 'epoll_wait', 'mio::poll'): return 'event loop (epoll)'
    if has(s, 'ContextFut', 'actix::address', 'LocalSet', 'tokio::runtime'): return 'actix/tokio scheduling, outside handlers'
    return 'other'
n = 0; a = collections.Counter(); b = collections.Counter(); ab = collections.Counter()
for st in samples(sys.argv[1]):
    n += 1; w = work(st); u = under(st); a[w] += 1; b[u] += 1; ab[(u, w)] += 1
print(f'{n} samples')
print('\nby kind of work (innermost frame):')
for k, v in a.most_common(): print(f'{100*v/n:6.1f}%  {k}')
print('\nby handler it runs under (inclusive):')
for k, v in b.most_common(): print(f'{100*v/n:6.1f}%  {k}')
if len(sys.argv) > 2:
    print('\nhandler x work:')
    for (u, w), v in ab.most_common(30): print(f'{100*v/n:6.1f}%  {u}  |  {w}')
