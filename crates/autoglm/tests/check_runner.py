"""Runs a client check's cases: one line per case, then "N passed, M failed", and the
exit status the Rust test reads (every case runs, even after one fails)."""
import sys


def run(cases):
    passed = failed = 0
    for case in cases:
        try:
            case()
            print(f"ok   {case.__name__}")
            passed += 1
        except Exception as e:  # report every case, then fail
            print(f"FAIL {case.__name__}: {type(e).__name__}: {str(e)[:400]}")
            failed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
