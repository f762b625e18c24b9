// Types of ssh-hosts.mjs (test SSH hosts), for the TypeScript tests.
export interface SshWorld {
  dir: string;
  /** The client's private key (its .pub is authorized on every host). */
  key: string;
  /** The client's known_hosts file (empty at first). */
  knownHosts: string;
  /** A HOME for fabrik processes, so nothing touches the real ~/.ssh. */
  home: string;
  clientPub: string;
}
export interface SshHostOptions {
  engines?: Record<string, string>;
  bare?: boolean;
  jumpHost?: boolean;
  /** Let sshd accept agent-forwarding requests (to prove the client never makes one). */
  agentForwarding?: boolean;
  authorize?: boolean;
  port?: number;
}
export interface SshTestHost {
  name: string;
  dir: string;
  user: string;
  uid: number;
  gid: number;
  /** The user's home inside the host (`/home/<user>`). */
  guestHome: string;
  /** The same folder on this machine. */
  hostHome: string;
  port: number;
  opts: { bare: boolean; jumpHost: boolean; agentForwarding: boolean };
  /** `ssh-ed25519 AAAA… comment` */
  hostKeyPub: string;
}
export const HOST_INIT: string;
export const SSHD: string;
export function sshHostsUnavailable(): string | undefined;
export function freePort(): Promise<number>;
export function waitForBanner(port: number, timeoutMs?: number): Promise<void>;
export function createWorld(dir: string): Promise<SshWorld>;
export function createHost(world: SshWorld, name: string, opts?: SshHostOptions): Promise<SshTestHost>;
export function loadHost(world: SshWorld, name: string): SshTestHost | undefined;
export function setBare(h: SshTestHost, bare: boolean): void;
export function runningPid(h: SshTestHost): number | undefined;
export function newHostKey(h: SshTestHost): Promise<void>;
export function knownHostsLine(h: SshTestHost): string;
export function trustHost(world: SshWorld, h: SshTestHost): void;
export function startHost(h: SshTestHost, opts?: { timeoutMs?: number }): Promise<void>;
export function stopHost(h: SshTestHost, opts?: { timeoutMs?: number }): Promise<void>;
export function sshdDown(h: SshTestHost, opts?: { timeoutMs?: number }): Promise<void>;
export function sshdUp(h: SshTestHost, opts?: { timeoutMs?: number }): Promise<void>;
export function stopAllSync(hosts: SshTestHost[]): void;
export function sshdActivity(h: SshTestHost): { logins: number; sessions: number; forwards: number; text: string };
export function hostPathOf(h: SshTestHost, guestPath: string): string;
