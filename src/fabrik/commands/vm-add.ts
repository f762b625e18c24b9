/**
 * `fabrik vm add NAME --ssh USER@HOST [--port P] [--identity FILE] [--known-hosts FILE] [--jump USER@HOST[:P]]
 * [--accept-new-host-key]`: register an existing Linux machine as a VM of the `ssh` driver.
 */
import { defineCommand, view } from "../command.js";
import { count, port, vmName } from "../args.js";

export default defineCommand({
  command: "add <name>",
  describe: "register an existing Linux machine reached over SSH as a VM (driver ssh); fabrik never starts, stops or deletes it",
  positionals: { name: { type: "string", demandOption: true, describe: "VM name (letters, digits, . _ -)", coerce: vmName } },
  options: {
    ssh: { type: "string", demandOption: true, describe: "USER@HOST of the machine (HOST: a name, an IPv4 or a [bracketed] IPv6 address)" },
    port: { type: "string", coerce: port(), describe: "sshd port (default 22)" },
    identity: { type: "string", describe: "private key to log in with (default: ~/.ssh/id_ed25519, id_ecdsa, id_rsa, then ssh-agent)" },
    "known-hosts": { type: "string", describe: "known_hosts file the host key is checked against (default ~/.ssh/known_hosts)" },
    jump: { type: "string", describe: "reach the machine through this jump host, USER@HOST[:PORT] (its key is checked too)" },
    "accept-new-host-key": {
      type: "boolean",
      default: false,
      describe: "accept and record a host key known_hosts does not hold yet (check its fingerprint first); a CHANGED key is always refused",
    },
    timeout: { type: "string", coerce: count("--timeout", 1, "30"), default: "30", describe: "seconds to connect and check the machine" },
  },
  async run(ctx, a) {
    const { addSshVm } = await import("../vm-service.js");
    const r = await addSshVm(ctx, {
      name: a.name,
      ssh: a.ssh,
      port: a.port,
      identity: a.identity,
      knownHosts: a["known-hosts"],
      jump: a.jump,
      acceptNewHostKey: a["accept-new-host-key"],
      timeoutMs: a.timeout * 1000,
    });
    const notes: string[] = [];
    if (r.host_key?.added) notes.push(`host key ${r.host_key.type} ${r.host_key.fingerprint} of ${r.address} added to ${r.known_hosts}`);
    notes.push(
      r.already_registered
        ? `VM ${r.name} was already registered at ${r.address}; checked it again`
        : `registered VM ${r.name} (ssh ${r.address}${r.jump ? ` via ${r.jump}` : ""}, home ${r.guest_home}); run on it with \`fabrik run --vm ${r.name} --workflow FILE\``,
    );
    if (!r.machine.bun) notes.push(`no bun on ${r.name} yet: the first \`fabrik run\` installs the engine (bun included) with npm`);
    return view(r, (v) => `${v.name}\n`, { notes });
  },
});

