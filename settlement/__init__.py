"""Settlement with partner banks: cycles, net positions, files, reconciliation, subsidy
disbursement (docs/settlement.md).

    records.py    journal records: CycleClosed, CycleSettled, SubsidyCredited,
                  ReconciliationResolved (in switch.journal.records' union)
    state.py      what the engine keeps of them (Engine.apply)
    ledger.py     which journal record moves which money: every type classified
    tally.py      the hot loop: one journal segment's records into sums
    positions.py  positions, payouts, fees, bank nets; the conservation checks
    layout.py     the fixed-width file layout, as data
    files.py      rendering a cycle's files; parsing settlement and return files
    cycle.py      settling one closed cycle, and re-running it
    cutover.py    when cycles close
    scheduler.py  the task in the switch service
    reconcile.py  bank return files, exception classes, resolutions
    subsidy.py    finance-bureau batches
    store.py      the embedded record; postgres.py and migrations/: PostgreSQL
    cli.py        `onecard settle`
    bench.py      the 10-million-record benchmark (synthetic.py: its journal)
    errors.py     the package's error tree

Nothing is imported here: the engine imports records.py and state.py, and those must not
pull in the rest (which imports the engine).
"""
