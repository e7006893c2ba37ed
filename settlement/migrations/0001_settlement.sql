-- Settlement: cycles, their positions, bank nets, payouts and files; reconciliation runs and
-- their exceptions. Money in fen (bigint), times in milliseconds since the epoch (bigint),
-- like the journal. Rows are written once per cycle (a re-run must match: same digest).

CREATE TABLE settlement_cycles (
    cycle integer PRIMARY KEY,
    business_date date NOT NULL,
    first_index bigint NOT NULL,
    last_index bigint NOT NULL,
    window_start_ms bigint NOT NULL,
    window_end_ms bigint NOT NULL,
    closed_ms bigint NOT NULL,
    records bigint NOT NULL,
    financial bigint NOT NULL,
    movement_fen bigint NOT NULL,
    fee_fen bigint NOT NULL,
    digest text NOT NULL,  -- SHA-256 of the manifest, as journalled in CycleSettled
    summary jsonb NOT NULL,  -- summary.json of the cycle, whole
    stored_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE settlement_positions (
    cycle integer NOT NULL REFERENCES settlement_cycles ON DELETE CASCADE,
    account text NOT NULL,
    party text NOT NULL,
    role text NOT NULL,
    bank text NOT NULL,
    count bigint NOT NULL,
    debit_fen bigint NOT NULL,
    credit_fen bigint NOT NULL,
    PRIMARY KEY (cycle, account, party)
);
CREATE INDEX settlement_positions_party ON settlement_positions (party, cycle);

CREATE TABLE settlement_bank_nets (
    cycle integer NOT NULL REFERENCES settlement_cycles ON DELETE CASCADE,
    bank text NOT NULL,
    debit_fen bigint NOT NULL,
    credit_fen bigint NOT NULL,
    net_fen bigint NOT NULL,  -- + the card service pays the bank
    PRIMARY KEY (cycle, bank)
);

CREATE TABLE settlement_payouts (
    cycle integer NOT NULL REFERENCES settlement_cycles ON DELETE CASCADE,
    payee text NOT NULL,
    role text NOT NULL,
    bank text NOT NULL,
    withheld boolean NOT NULL,  -- no payout account configured
    gross_fen bigint NOT NULL,
    reversed_fen bigint NOT NULL,
    fee_fen bigint NOT NULL,
    payout_fen bigint NOT NULL,
    PRIMARY KEY (cycle, payee)
);

CREATE TABLE settlement_files (
    cycle integer NOT NULL REFERENCES settlement_cycles ON DELETE CASCADE,
    name text NOT NULL,
    sha256 text NOT NULL,
    bytes bigint NOT NULL,
    PRIMARY KEY (cycle, name)
);

CREATE TABLE reconciliation_runs (
    cycle integer NOT NULL,
    bank text NOT NULL,
    ours_sha256 text NOT NULL,
    theirs_sha256 text NOT NULL,
    matched bigint NOT NULL,
    matched_fen bigint NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cycle, bank)
);

CREATE TABLE reconciliation_exceptions (
    cycle integer NOT NULL,
    bank text NOT NULL,
    entry text NOT NULL,
    discrepancy text NOT NULL,
    card text NOT NULL,
    ours_fen bigint NOT NULL,
    theirs_fen bigint NOT NULL,
    ours_lines integer[] NOT NULL,
    theirs_lines integer[] NOT NULL,
    PRIMARY KEY (cycle, bank, entry),
    FOREIGN KEY (cycle, bank) REFERENCES reconciliation_runs ON DELETE CASCADE
);
