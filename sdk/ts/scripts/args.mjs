// SPDX-License-Identifier: GPL-3.0-or-later
// The scripts' command lines: `--flag VALUE` pairs and bare `--switch`es, nothing more.

/** The value after `flag` in `args`, or undefined when the flag is absent. */
export function flagValue(args, flag) {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}
