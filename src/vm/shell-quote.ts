/**
 * The one function fabrik uses to put a value into a POSIX shell line. Nothing read from a VM or typed
 * by a user is ever interpolated into a shell line any other way.
 *
 * Built on the `shell-quote` library; tested by round-tripping hostile strings through bash.
 */
import { quote } from "shell-quote";

/** Quote one word for bash/sh so that it is passed through as exactly one argument. */
export function shellQuote(word: string): string {
  if (word.includes("\0")) throw new Error("cannot pass a NUL byte through a shell");
  if (word === "") return "''";
  // shell-quote leaves a bare word alone when it is safe, and otherwise uses single or double quotes
  // with escapes; newlines inside double quotes are literal, which bash preserves.
  return quote([word]);
}

/** Quote each word and join with spaces: a command line that runs `argv` exactly. */
export function shellJoin(argv: readonly string[]): string {
  return argv.map(shellQuote).join(" ");
}
