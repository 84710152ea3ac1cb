/**
 * A server socket with the steering options of issue 8, opened one syscall at
 * a time (socket-lifecycle.ts), because each option has its moment:
 *
 * - SO_BINDTODEVICE before bind(): the device is part of what decides which
 *   reuseport group a socket joins (inet_reuseport_add_sock() and
 *   udp_reuseport_add_sock() only join a socket with the same sk_bound_dev_if).
 * - SO_INCOMING_CPU before bind(): reuseport_alloc() / __reuseport_add_sock()
 *   then count it in the group's `incoming_cpu`.
 * - SO_ATTACH_REUSEPORT_CBPF after bind() (UDP) or listen() (TCP): attached
 *   before, the program goes to a group of the socket's own
 *   (reuseport_attach_prog() → reuseport_alloc()), which reuseport_add_sock()
 *   throws away when the socket joins the existing group at bind time.
 *   Attached after, it is the group's, whichever member attached it.
 *
 * The fd is handed to the worker exactly like one from the helper's openSocket(),
 * and is opened from the same NativeSocketOptions (binder.ts fills them in).
 */
import { KernelError } from '../errors.js';
import type { NativeSocketOptions } from './native.js';
import { type CbpfProgramSpec, type LifecycleResult, LifecycleSocket } from './socket-lifecycle.js';

/** The steering options a server socket may carry (all optional). */
export interface SocketSteering {
  /** SO_BINDTODEVICE, e.g. "lo". */
  device?: string;
  /** SO_INCOMING_CPU. */
  incomingCpu?: number;
  /** SO_ATTACH_REUSEPORT_CBPF, attached once the socket is in its group. */
  cbpf?: CbpfProgramSpec;
}

/** Whether a request needs this opener rather than the helper's one-call openSocket. */
export function hasSteering(steering: SocketSteering | undefined): steering is SocketSteering {
  return (
    steering !== undefined &&
    (steering.device !== undefined || steering.incomingCpu !== undefined || steering.cbpf !== undefined)
  );
}

/** Opens, configures, binds (and listens on) the socket; returns its fd. Throws KernelError naming the step. */
export function openSteeredSocket(options: NativeSocketOptions, steering: SocketSteering): number {
  const created = LifecycleSocket.create(options.family, options.type);
  if (!created.ok) throw created.error;
  const socket = created.socket;
  const must = (result: LifecycleResult) => {
    if (result.ok) return;
    socket.close();
    throw new KernelError(`${result.error.syscall} ${result.outcome}`, {
      code: result.outcome,
      errno: result.error.errno,
      syscall: result.error.syscall,
      address: options.address,
      port: options.port,
    });
  };
  must(socket.setOption('SO_REUSEADDR', options.reuseAddr));
  must(socket.setOption('SO_REUSEPORT', options.reusePort));
  if (options.ipv6Only !== undefined && options.family === 6) must(socket.setOption('IPV6_V6ONLY', options.ipv6Only));
  if (steering.device !== undefined) must(socket.bindToDevice(steering.device));
  if (steering.incomingCpu !== undefined) must(socket.setOption('SO_INCOMING_CPU', steering.incomingCpu));
  must(socket.bind(options.address, options.port));
  if (options.type === 'tcp') must(socket.listen(options.backlog));
  if (steering.cbpf !== undefined) must(socket.attachCbpf(steering.cbpf));
  return socket.release();
}
