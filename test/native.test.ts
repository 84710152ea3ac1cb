// The native helper against real sockets: loopback only, kernel-assigned ports only.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import test from 'node:test';
import { promisify } from 'node:util';
import { KernelError } from '../src/errors.js';
import {
  loadNativeHelper,
  loadNativeHelperUncached,
  type NativeHelper,
  type NativeSocketOptions,
} from '../src/net/native.js';
import { cleanups } from './helpers.js';

const execFileAsync = promisify(execFile);

const loaded = loadNativeHelper();
const skip: string | false = loaded.helper === null ? `native helper unavailable: ${loaded.reason}` : false;
/** Options for tests that need the addon: skipped with the reason when it is not built. */
const needsHelper = { skip, timeout: 10_000 };

function native(): NativeHelper {
  if (loaded.helper === null) throw new Error(loaded.reason);
  return loaded.helper;
}

const TCP4: NativeSocketOptions = {
  family: 4,
  type: 'tcp',
  address: '127.0.0.1',
  port: 0,
  reusePort: true,
  reuseAddr: false,
};
const UDP4: NativeSocketOptions = { ...TCP4, type: 'udp' };

/** net.Server#listen({ fd }); the server owns the fd afterwards. */
async function adoptTcp(fd: number, defer: (fn: () => unknown) => void): Promise<net.Server> {
  const server = net.createServer();
  const listening = once(server, 'listening');
  try {
    server.listen({ fd });
  } catch (err) {
    native().closeFd(fd);
    throw err;
  }
  defer(() => new Promise<void>((resolve) => server.close(() => resolve())));
  await listening;
  return server;
}

/** dgram.Socket#bind({ fd }); the socket owns the fd afterwards. */
async function adoptUdp(fd: number, type: 'udp4' | 'udp6', defer: (fn: () => unknown) => void): Promise<dgram.Socket> {
  const socket = dgram.createSocket(type);
  // dgram emits 'listening' synchronously inside bind({ fd }): listen first.
  const listening = once(socket, 'listening');
  try {
    socket.bind({ fd });
  } catch (err) {
    native().closeFd(fd);
    throw err;
  }
  defer(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  await listening;
  return socket;
}

function portOf(endpoint: net.Server | dgram.Socket): number {
  const address = endpoint.address();
  assert.ok(address !== null && typeof address === 'object', 'endpoint is bound');
  return address.port;
}

const O_NONBLOCK = 0o4000;
function isNonBlocking(fd: number): boolean {
  const match = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  assert.ok(match, `flags in /proc/self/fdinfo/${fd}`);
  return (Number.parseInt(match[1]!, 8) & O_NONBLOCK) !== 0;
}

test('two reusePort TCP fds bind the same 127.0.0.1 port and accept after net adoption', needsHelper, async (t) => {
  const defer = cleanups(t);
  const first = await adoptTcp(native().openSocket(TCP4), defer);
  const port = portOf(first);
  const second = await adoptTcp(native().openSocket({ ...TCP4, port }), defer);
  assert.equal(portOf(second), port);

  const accepted = new Promise<void>((resolve) => {
    for (const server of [first, second]) {
      server.once('connection', (socket: net.Socket) => {
        socket.destroy();
        resolve();
      });
    }
  });
  const client = net.connect({ host: '127.0.0.1', port });
  defer(() => client.destroy());
  await Promise.all([once(client, 'connect'), accepted]);
});

test('without reusePort on the second fd, bind fails with EADDRINUSE', needsHelper, async (t) => {
  const defer = cleanups(t);
  const first = await adoptTcp(native().openSocket(TCP4), defer);
  const port = portOf(first);
  assert.throws(
    () => native().openSocket({ ...TCP4, port, reusePort: false }),
    (err: unknown) => {
      assert.ok(err instanceof KernelError);
      assert.equal(err.code, 'EADDRINUSE');
      assert.equal(err.errno, -98);
      assert.equal(err.syscall, 'bind');
      assert.equal(err.address, '127.0.0.1');
      assert.equal(err.port, port);
      assert.equal(err.message, `bind EADDRINUSE 127.0.0.1:${port}`);
      return true;
    },
  );
});

test('an address not on this machine fails with EADDRNOTAVAIL', needsHelper, () => {
  // 192.0.2.1 is TEST-NET-1: bind only, nothing is ever sent.
  assert.throws(() => native().openSocket({ ...TCP4, address: '192.0.2.1' }), {
    name: 'KernelError',
    code: 'EADDRNOTAVAIL',
    errno: -99,
    syscall: 'bind',
  });
});

test('a string that is not an IP literal of the family fails in inet_pton with EINVAL', needsHelper, () => {
  const cases: NativeSocketOptions[] = [
    { ...TCP4, address: '127.0.0.256' },
    { ...TCP4, address: 'localhost' },
    { ...TCP4, address: '' },
    { ...TCP4, address: '127.0.0.1\0junk' },
    { ...TCP4, address: '::1' },
    { ...TCP4, family: 6, address: '127.0.0.1' },
    { ...TCP4, family: 6, address: `${'0:'.repeat(100)}1` },
  ];
  for (const options of cases) {
    assert.throws(
      () => native().openSocket(options),
      { name: 'KernelError', code: 'EINVAL', errno: -22, syscall: 'inet_pton' },
      JSON.stringify(options),
    );
  }
});

test('two reusePort UDP fds share a port and receive after dgram adoption', needsHelper, async (t) => {
  const defer = cleanups(t);
  const first = await adoptUdp(native().openSocket(UDP4), 'udp4', defer);
  const port = portOf(first);
  const second = await adoptUdp(native().openSocket({ ...UDP4, port }), 'udp4', defer);
  assert.equal(portOf(second), port);

  const received = new Promise<string>((resolve) => {
    for (const socket of [first, second]) socket.once('message', (msg: Buffer) => resolve(msg.toString()));
  });
  const client = dgram.createSocket('udp4');
  defer(() => new Promise<void>((resolve) => client.close(() => resolve())));
  client.send('ping', port, '127.0.0.1');
  assert.equal(await received, 'ping');
});

test('a cbpf program returning 0 steers every datagram to the first socket of the group', needsHelper, async (t) => {
  const defer = cleanups(t);
  const retZero = [{ code: 0x06 /* BPF_RET | BPF_K */, jt: 0, jf: 0, k: 0 }];
  const first = await adoptUdp(native().openSocket({ ...UDP4, cbpf: retZero }), 'udp4', defer);
  const port = portOf(first);
  const second = await adoptUdp(native().openSocket({ ...UDP4, port }), 'udp4', defer);

  const total = 16;
  const counts = [0, 0];
  const done = new Promise<void>((resolve) => {
    [first, second].forEach((socket, index) => {
      socket.on('message', () => {
        counts[index]! += 1;
        if (counts[0]! + counts[1]! === total) resolve();
      });
    });
  });
  for (let i = 0; i < total; i++) {
    // A new client each time: a new source port, so a new reuseport hash.
    const client = dgram.createSocket('udp4');
    defer(() => new Promise<void>((resolve) => client.close(() => resolve())));
    client.send(`d${i}`, port, '127.0.0.1');
  }
  await done;
  assert.deepEqual(counts, [total, 0]);
});

test('cbpf accepts negative k (SKF_AD_OFF ancillary loads)', needsHelper, () => {
  const SKF_AD_CPU = -0x1000 + 36;
  const returnCpu = [
    { code: 0x20 /* BPF_LD | BPF_W | BPF_ABS */, jt: 0, jf: 0, k: SKF_AD_CPU },
    { code: 0x16 /* BPF_RET | BPF_A */, jt: 0, jf: 0, k: 0 },
  ];
  native().closeFd(native().openSocket({ ...UDP4, cbpf: returnCpu }));
});

test('IPv6 ::1 with ipv6Only binds, listens and accepts', needsHelper, async (t) => {
  const defer = cleanups(t);
  let fd: number;
  try {
    fd = native().openSocket({ ...TCP4, family: 6, address: '::1', ipv6Only: true });
  } catch (err) {
    if (err instanceof KernelError && (err.code === 'EADDRNOTAVAIL' || err.code === 'EAFNOSUPPORT')) {
      t.skip(`no IPv6 loopback here (${err.code})`);
      return;
    }
    throw err;
  }
  const server = await adoptTcp(fd, defer);
  assert.deepEqual(server.address(), { address: '::1', family: 'IPv6', port: portOf(server) });

  const accepted = once(server, 'connection').then(([socket]) => (socket as net.Socket).destroy());
  const client = net.connect({ host: '::1', port: portOf(server) });
  defer(() => client.destroy());
  await Promise.all([once(client, 'connect'), accepted]);
});

test('failed opens never leak an fd', needsHelper, async (t) => {
  const defer = cleanups(t);
  const holder = await adoptTcp(native().openSocket({ ...TCP4, reusePort: false }), defer);
  const port = portOf(holder);
  const failures: Array<[NativeSocketOptions, string]> = [
    [{ ...TCP4, port }, 'EADDRINUSE'], // bind
    [{ ...UDP4, address: '192.0.2.1' }, 'EADDRNOTAVAIL'], // bind
    [{ ...TCP4, reusePort: false, cbpf: [] }, 'EINVAL'], // setsockopt SO_ATTACH_REUSEPORT_CBPF
    [{ ...TCP4, address: 'nope' }, 'EINVAL'], // inet_pton, before socket()
  ];

  const before = readdirSync('/proc/self/fd');
  for (let i = 0; i < 50; i++) {
    for (const [options, code] of failures) assert.throws(() => native().openSocket(options), { code });
  }
  assert.deepEqual(readdirSync('/proc/self/fd'), before);
});

test('net adoption makes the fd non-blocking (libuv uv_tcp_open)', needsHelper, async (t) => {
  const defer = cleanups(t);
  const fd = native().openSocket(TCP4);
  assert.equal(isNonBlocking(fd), false, 'the helper leaves the fd blocking');
  await adoptTcp(fd, defer);
  assert.equal(isNonBlocking(fd), true);
});

test('dgram adoption makes the fd non-blocking (libuv uv_udp_open)', needsHelper, async (t) => {
  const defer = cleanups(t);
  const fd = native().openSocket(UDP4);
  assert.equal(isNonBlocking(fd), false, 'the helper leaves the fd blocking');
  await adoptUdp(fd, 'udp4', defer);
  assert.equal(isNonBlocking(fd), true);
});

test('dgram adoption turns SO_REUSEADDR on, whatever reuseAddr said (libuv uv_udp_open)', needsHelper, async (t) => {
  // Without adoption this second bind fails with EADDRINUSE: the first fd has SO_REUSEADDR off.
  const defer = cleanups(t);
  const first = await adoptUdp(native().openSocket({ ...UDP4, reusePort: false, reuseAddr: false }), 'udp4', defer);
  const second = native().openSocket({ ...UDP4, port: portOf(first), reusePort: false, reuseAddr: true });
  native().closeFd(second);
});

test('closeFd of an fd that is not open throws EBADF', needsHelper, () => {
  // Above any possible RLIMIT_NOFILE, so never a live fd.
  assert.throws(() => native().closeFd(2 ** 31 - 1), { name: 'KernelError', code: 'EBADF', syscall: 'close' });
});

function socketFlags(): NonNullable<NativeHelper['socketFlags']> {
  const flags = native().socketFlags;
  assert.ok(flags, 'this build of the addon has lcGetOption / lcSetOption');
  return flags;
}

test('socketFlags set a boolean option and read it back', needsHelper, (t) => {
  const fd = native().openSocket({ ...TCP4, reuseAddr: false });
  t.after(() => native().closeFd(fd));
  assert.equal(socketFlags().get(fd, 'reuseAddr'), false);
  assert.equal(socketFlags().get(fd, 'reusePort'), true);
  socketFlags().set(fd, 'reuseAddr', true);
  socketFlags().set(fd, 'reusePort', false);
  assert.equal(socketFlags().get(fd, 'reuseAddr'), true);
  assert.equal(socketFlags().get(fd, 'reusePort'), false);
});

test('socketFlags on an fd that is not open throw KernelError EBADF with errno and syscall', needsHelper, () => {
  const closed = 2 ** 31 - 1;
  assert.throws(() => socketFlags().get(closed, 'reusePort'), {
    name: 'KernelError',
    code: 'EBADF',
    errno: -9,
    syscall: 'getsockopt',
  });
  assert.throws(() => socketFlags().set(closed, 'reuseAddr', true), {
    name: 'KernelError',
    code: 'EBADF',
    errno: -9,
    syscall: 'setsockopt',
  });
});

test('argument errors throw TypeError or RangeError', needsHelper, () => {
  const openSocket = native().openSocket as (options: unknown) => number;
  assert.throws(() => openSocket(undefined), TypeError);
  assert.throws(() => openSocket({ ...TCP4, family: 5 }), RangeError);
  assert.throws(() => openSocket({ ...TCP4, type: 'sctp' }), TypeError);
  assert.throws(() => openSocket({ ...TCP4, address: 127 }), TypeError);
  assert.throws(() => openSocket({ ...TCP4, port: 65536 }), RangeError);
  assert.throws(() => openSocket({ ...TCP4, reusePort: undefined }), TypeError);
  assert.throws(() => openSocket({ ...TCP4, cbpf: [{ code: 6, jt: 0, jf: 0 }] }), TypeError);
});

test('raiseOpenFileLimit sets the soft limit to the hard limit', needsHelper, () => {
  const raised = native().raiseOpenFileLimit();
  assert.equal(raised.soft, raised.hard);
  assert.deepEqual(native().getOpenFileLimit(), raised);
});

test('REUSEPORT_NATIVE_DISABLE makes loadNativeHelper report the helper as unavailable', {
  timeout: 10_000,
}, async () => {
  const moduleUrl = new URL('../src/net/native.js', import.meta.url).href;
  const script =
    'import(process.argv[1]).then((m) => { const r = m.loadNativeHelper(); ' +
    'console.log(JSON.stringify({ helper: r.helper === null ? null : "loaded", reason: r.reason })); });';
  const env = { ...process.env, REUSEPORT_NATIVE_DISABLE: '1' };
  const { stdout } = await execFileAsync(process.execPath, ['-e', script, moduleUrl], { env });
  assert.deepEqual(JSON.parse(stdout), { helper: null, reason: 'disabled by REUSEPORT_NATIVE_DISABLE' });
  assert.deepEqual(loadNativeHelperUncached({ REUSEPORT_NATIVE_DISABLE: '1' }), {
    helper: null,
    reason: 'disabled by REUSEPORT_NATIVE_DISABLE',
  });
});

test('the compiled loader finds the addon from any working directory', needsHelper, async () => {
  const moduleUrl = new URL('../src/net/native.js', import.meta.url).href;
  const script =
    'import(process.argv[1]).then((m) => { const r = m.loadNativeHelper(); ' +
    'console.log(JSON.stringify(r.helper === null ? { reason: r.reason } : { path: r.helper.path })); });';
  const env = { ...process.env };
  delete env.REUSEPORT_NATIVE_DISABLE;
  const { stdout } = await execFileAsync(process.execPath, ['-e', script, moduleUrl], { env, cwd: '/' });
  assert.deepEqual(JSON.parse(stdout), { path: native().path });
});
