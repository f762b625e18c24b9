/** `fabrik run approve --id N [--node X] [--note TEXT] [--by NAME] [--dry-run]`: the engine's own approve, then the run continues. */
import { decisionCommand } from "./decision.js";

export default decisionCommand("approve", "approve the run's waiting approval gate, then continue the run");
