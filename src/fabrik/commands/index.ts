/**
 * The command tree: every command fabrik has, declared once (one file per command). Command files are light
 * (options and a handler that imports its service on first use), so `--help` and completion load no service.
 */
import type { CommandGroup } from "../command.js";
import vmCreate from "./vm-create.js";
import vmList from "./vm-list.js";
import vmStart from "./vm-start.js";
import vmStop from "./vm-stop.js";
import vmDelete from "./vm-delete.js";
import vmShell from "./vm-shell.js";
import vmAdd from "./vm-add.js";
import vmRemove from "./vm-remove.js";
import runStart from "./run-start.js";
import runAttach from "./run-attach.js";
import runResume from "./run-resume.js";
import runsList from "./runs-list.js";
import runsShow from "./runs-show.js";
import runsWatch from "./runs-watch.js";
import runsImport from "./runs-import.js";
import configList from "./config-list.js";
import configGet from "./config-get.js";
import configSet from "./config-set.js";
import configUnset from "./config-unset.js";

export const COMMAND_TREE: readonly CommandGroup[] = [
  { command: "vm", describe: "manage the VMs runs execute in", commands: [vmCreate, vmAdd, vmList, vmStart, vmStop, vmDelete, vmRemove, vmShell] },
  { command: "run", describe: "start a workflow run in a VM (and: run attach, run resume)", commands: [runStart, runAttach, runResume] },
  { command: "runs", describe: "inspect runs: list, show, watch, import", commands: [runsList, runsShow, runsWatch, runsImport] },
  { command: "config", describe: "fabrik's settings: list, get, set, unset (with where each value came from)", commands: [configList, configGet, configSet, configUnset] },
];
