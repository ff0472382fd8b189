"""`python -m bench {ledger,sync,print,scan,dashboard,cli,suggestions,member,chain,all} [--quick]`: run benchmarks; the last stdout line is one JSON object."""

from __future__ import annotations

import argparse
import json
import sys


def _ledger(quick: bool) -> dict:
    from bench import ledger  # noqa: PLC0415 (imported when asked for)

    return ledger.run(quick=quick)


def _sync(quick: bool) -> dict:
    from bench import sync  # noqa: PLC0415 (imported when asked for)

    return sync.run(quick=quick)


def _print(quick: bool) -> dict:
    from bench import print as print_bench  # noqa: PLC0415 (imported when asked for)

    return print_bench.run(quick=quick)


def _scan(quick: bool) -> dict:
    from bench import scan  # noqa: PLC0415 (imported when asked for)

    return scan.run(quick=quick)


def _dashboard(quick: bool) -> dict:
    from bench import dashboard  # noqa: PLC0415 (imported when asked for)

    return dashboard.run(quick=quick)


def _cli(quick: bool) -> dict:
    from bench import cli  # noqa: PLC0415 (imported when asked for)

    return cli.run(quick=quick)


def _suggestions(quick: bool) -> dict:
    from bench import suggestions  # noqa: PLC0415 (imported when asked for)

    return suggestions.run(quick=quick)


def _member(quick: bool) -> dict:
    from bench import member  # noqa: PLC0415 (imported when asked for)

    return member.run(quick=quick)


def _chain(quick: bool, options: list[str] = ()) -> dict:
    from bench import chain  # noqa: PLC0415 (imported when asked for)

    return chain.from_args([*options, *(["--quick"] if quick else [])])


BENCHMARKS = {"ledger": _ledger, "sync": _sync, "print": _print, "scan": _scan, "dashboard": _dashboard,
              "cli": _cli, "suggestions": _suggestions, "member": _member, "chain": _chain}
ALL = [name for name in BENCHMARKS if name != "chain"]  # the storm of a chain's stores: only when asked for


def main(argv: list[str] | None = None) -> int:
    top = argparse.ArgumentParser(prog="python -m bench", description="store-edge benchmarks",
                                  epilog="chain takes options of its own: python -m bench.chain --help")
    top.add_argument("benchmark", choices=(*BENCHMARKS, "all"), help="which benchmark to run ('all': every one)")
    top.add_argument("--quick", action="store_true", help="fewer requests (same dataset); under a minute")
    args, options = top.parse_known_args(argv)
    if options and args.benchmark != "chain":  # only chain has options of its own (python -m bench chain --help)
        top.error(f"unrecognized arguments: {' '.join(options)}")

    names = ALL if args.benchmark == "all" else [args.benchmark]
    results = []
    for name in names:
        try:
            results.append(BENCHMARKS[name](args.quick, options) if options else BENCHMARKS[name](args.quick))
        except Exception as exc:  # noqa: BLE001 (reported, and the exit status says it failed)
            print(f"benchmark {name} FAILED: {exc}", file=sys.stderr)
            print(json.dumps({"benchmark": name, "error": str(exc), "quick": args.quick}, ensure_ascii=False))
            return 1
    if args.benchmark == "all":
        print(json.dumps({"benchmark": "all", "quick": args.quick, "results": results,
                          "met": all(all(r["met"].values()) for r in results)}, ensure_ascii=False))
    else:
        print(json.dumps(results[0], ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
