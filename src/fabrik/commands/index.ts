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
import runCancel from "./run-cancel.js";
import runApprove from "./run-approve.js";
import runDeny from "./run-deny.js";
import runSignal from "./run-signal.js";
import runCompact from "./run-compact.js";
import runsList from "./runs-list.js";
import runsShow from "./runs-show.js";
import runsWatch from "./runs-watch.js";
import runsImport from "./runs-import.js";
import runsWhy from "./runs-why.js";
import runsEvents from "./runs-events.js";
import runsNodes from "./runs-nodes.js";
import configList from "./config-list.js";
import configGet from "./config-get.js";
import configSet from "./config-set.js";
import configUnset from "./config-unset.js";
import vmInstallEngine from "./vm-install-engine.js";
import doctor from "./doctor.js";
import fleet from "./fleet.js";
import runsEvidence from "./runs-evidence.js";
import runsPrune from "./runs-prune.js";
import supervise from "./supervise.js";

export const COMMAND_TREE: readonly CommandGroup[] = [
  { command: "vm", describe: "manage the VMs runs execute in", commands: [vmCreate, vmAdd, vmList, vmStart, vmStop, vmDelete, vmRemove, vmShell, vmInstallEngine] },
  {
    command: "run",
    describe: "start a workflow run in a VM (and: run attach, resume, cancel, approve, deny, signal, compact)",
    commands: [runStart, runAttach, runResume, runCancel, runApprove, runDeny, runSignal, runCompact],
  },
  {
    command: "runs",
    describe: "inspect runs: list, show, watch, why, events, nodes, import, evidence, prune",
    commands: [runsList, runsShow, runsWatch, runsWhy, runsEvents, runsNodes, runsImport, runsEvidence, runsPrune],
  },
  { command: "config", describe: "fabrik's settings: list, get, set, unset (with where each value came from)", commands: [configList, configGet, configSet, configUnset] },
  // Fleet care (issue 14): each a single command.
  { command: "doctor", describe: "check the host and the VMs; each check ok/warn/fail with its fix (exit 1 on a failure)", commands: [doctor] },
  { command: "fleet", describe: "every VM's health (probe history), engines, free disk, active runs; idle VMs flagged", commands: [fleet] },
  { command: "supervise", describe: "the fleet's watchdog: resume orphaned runs with run resume's checks (--once for cron)", commands: [supervise] },
];
