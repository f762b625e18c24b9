/** `fabrik run deny --id N [--node X] [--note TEXT] [--by NAME] [--dry-run]`: the engine's own deny, then the run continues. */
import { decisionCommand } from "./decision.js";

export default decisionCommand("deny", "deny the run's waiting approval gate, then continue the run (its workflow decides what a denial does)");
