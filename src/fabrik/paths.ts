/**
 * Where fabrik keeps its own files on the host.
 *
 * `FABRIK_HOME` (like `LIMA_HOME`) holds the run registry, local-driver VMs and caches; default
 * `$XDG_DATA_HOME/fabrik`, else `~/.local/share/fabrik`. The config file lives at `FABRIK_CONFIG`, else
 * `$XDG_CONFIG_HOME/fabrik/config.json`, else `~/.config/fabrik/config.json`.
 */
import os from "node:os";
import path from "node:path";

export interface FabrikPaths {
  home: string;
  registry: string;
  localVms: string;
  cache: string;
  config: string;
}

/** Resolve fabrik's paths from the environment (pure: `env` and `homedir` injected for tests). */
export function resolvePaths(env: NodeJS.ProcessEnv = process.env, homedir: string = os.homedir()): FabrikPaths {
  const dataHome = env.XDG_DATA_HOME && path.isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : path.join(homedir, ".local", "share");
  const configHome =
    env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(homedir, ".config");
  const home = path.resolve(env.FABRIK_HOME || path.join(dataHome, "fabrik"));
  return {
    home,
    registry: path.join(home, "registry.db"),
    localVms: path.join(home, "local-vms"),
    cache: path.join(home, "cache"),
    config: path.resolve(env.FABRIK_CONFIG || path.join(configHome, "fabrik", "config.json")),
  };
}
