"""``hgsearch trial`` and ``hgsearch keys``: one trial, and the keys that configure it."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``trial`` and ``keys`` to the ``hgsearch`` command."""
    p = subparsers.add_parser("trial", help="run one trial: HGSR training, pruning, "
                              "fine-tuning -> a row")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML mapping of trial keys")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                   help="trial keys (after --config); `hgsearch keys` lists them")
    p.add_argument("--out", metavar="DIR", help="results folder (the key out_dir; default results)")
    p.set_defaults(func=trial_command)

    p = subparsers.add_parser("keys", help="list the trial keys with their type, default and "
                              "meaning", description="List the trial keys by group: name, "
                              "type, default and meaning (allowed values included). WORDs "
                              "filter: a key is listed when its name contains a WORD or its "
                              "group is one.")
    p.add_argument("words", nargs="*", metavar="WORD", help="part of a key name (lam, "
                   "prune_) or a group name (run, data, train, hgsr, stop, prune, finetune, "
                   "measure)")
    p.add_argument("--group", metavar="GROUP", help="only the keys of GROUP")
    p.set_defaults(func=keys_command)


def trial_command(args: argparse.Namespace) -> int:
    """Run the trial; exit 1 when it did not end ``ok`` (its row is written all the same)."""
    from hgsearch.config_file import compose_config

    cfg = compose_config(config_file=args.config, assignments=args.set or [], out_dir=args.out)
    from hgsearch.results_layout import ResultsFolder
    from hgsearch.trial import run_trial  # torch is imported only once the input is valid

    row = run_trial(cfg)
    print(f"row written to {ResultsFolder(row['out_dir']).row(row['trial_id'])}")
    return 0 if row["status"] == "ok" else 1


def keys_command(args: argparse.Namespace) -> int:
    """Print the keys matching the filter by group, wrapped to at most 100 columns."""
    import shutil

    from hgsearch.config import FIELDS, key_table
    from hgsearch.errors import UserError

    groups = list(dict.fromkeys(f.metadata["group"] for f in FIELDS.values()))
    if args.group is not None and args.group not in groups:
        raise UserError(f"--group {args.group}: no such group; groups: {', '.join(groups)}")
    words = [w.lower() for w in args.words]
    rows = [row for row in key_table()
            if (args.group is None or FIELDS[row[0]].metadata["group"] == args.group)
            and (not words or any(w in row[0] or w == FIELDS[row[0]].metadata["group"]
                                  for w in words))]
    if not rows:
        wanted = " ".join(args.words) or "(any)"
        raise UserError(f"no trial key matches {wanted}"
                        + (f" in group {args.group}" if args.group else "")
                        + f"; groups: {', '.join(groups)}; `hgsearch keys` lists them all")
    width = max(60, min(100, shutil.get_terminal_size((100, 24)).columns))
    for line in key_lines(rows, {k: FIELDS[k].metadata["group"] for k, *_ in rows}, width):
        print(line)
    return 0


def key_lines(rows: list[tuple[str, str, str, str]], group_of: dict[str, str],
              width: int) -> list[str]:
    """The keys table: a header, then per group a title line and one entry per key, its
    meaning (and allowed values) wrapped so that no line is longer than ``width``."""
    import textwrap

    key_w = max(len("KEY"), *(len(k) for k, *_ in rows))
    type_w = max(len("TYPE"), *(len(t.split(" ", 1)[0]) for _, t, *_ in rows))
    default_w = max(len("DEFAULT"), *(len(d) for _, _, d, _ in rows))
    indent = key_w + type_w + default_w + 6
    out = [f"{'KEY':<{key_w}}  {'TYPE':<{type_w}}  {'DEFAULT':<{default_w}}  MEANING",
           f"(set with `hgsearch trial --set KEY=VALUE` or in a search space's fixed/search; "
           f"{len(rows)} key{'s' if len(rows) != 1 else ''})"]
    group = None
    for key, kind, default, meaning in rows:
        if group_of[key] != group:
            group = group_of[key]
            out += ["", f"[{group}]"]
        name, _, allowed = kind.partition(" ")
        text = meaning + (f"; allowed: {allowed}" if allowed else "")
        wrapped = textwrap.wrap(text, width=max(20, width - indent), break_on_hyphens=False,
                                break_long_words=False) or [""]
        out.append(f"{key:<{key_w}}  {name:<{type_w}}  {default:<{default_w}}  {wrapped[0]}")
        out += [" " * indent + more for more in wrapped[1:]]
    return out
