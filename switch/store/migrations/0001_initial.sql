-- The service API's tables: sealed personal data, and the projection of the journal.
-- Money in fen (bigint), times in milliseconds since the epoch (bigint), like the journal.

CREATE TABLE projection (
    name text PRIMARY KEY,
    next_index bigint NOT NULL  -- the journal index the projector reads next
);
INSERT INTO projection (name, next_index) VALUES ('journal', 0);

-- Every journal record, as JSON, with the columns settlement and investigations query.
CREATE TABLE journal (
    idx bigint PRIMARY KEY,
    tag text NOT NULL,
    time_ms bigint,
    card text,
    terminal_id text,
    code text,
    moved_fen bigint,
    body jsonb NOT NULL
);
CREATE INDEX journal_card ON journal (card, idx) WHERE card IS NOT NULL;
CREATE INDEX journal_terminal ON journal (terminal_id, idx) WHERE terminal_id IS NOT NULL;

-- Name, citizen ID number and contact, AES-256-GCM sealed with the holder token as
-- associated data (switch/privacy). Never projected from the journal: written directly.
CREATE TABLE holders (
    token text PRIMARY KEY,
    sealed bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cards (
    card text PRIMARY KEY,
    holder_token text NOT NULL,
    holder_masked text NOT NULL,
    category text NOT NULL,
    status text NOT NULL,
    purse_fen bigint NOT NULL,
    debt_fen bigint NOT NULL DEFAULT 0,
    medical_fen bigint NOT NULL,
    bank_id text NOT NULL,
    bank_account_masked text NOT NULL,
    updated_idx bigint NOT NULL
);
CREATE INDEX cards_holder ON cards (holder_token);

-- Every read of personal data (regulation art. 11, 16): the holder's access report.
CREATE TABLE audit_reads (
    idx bigint PRIMARY KEY,
    time_ms bigint NOT NULL,
    actor text NOT NULL,
    role text NOT NULL,
    holder_token text NOT NULL,
    purpose text NOT NULL,
    what text NOT NULL,
    unmasked boolean NOT NULL
);
CREATE INDEX audit_reads_holder ON audit_reads (holder_token, idx);

CREATE TABLE integrity_entries (
    entry_id bigint PRIMARY KEY,
    idx bigint NOT NULL,
    time_ms bigint NOT NULL,
    holder_token text NOT NULL,
    card text NOT NULL,
    violation text NOT NULL,
    evidence bigint[] NOT NULL,
    reference text NOT NULL,
    actor text NOT NULL
);
CREATE INDEX integrity_entries_holder ON integrity_entries (holder_token);

CREATE TABLE complaints (
    complaint_id bigint PRIMARY KEY,
    time_ms bigint NOT NULL,
    kind text NOT NULL,
    channel text NOT NULL,
    holder_token text NOT NULL,
    card text NOT NULL,
    text_sealed bytea NOT NULL,
    due_ms bigint NOT NULL,
    state text NOT NULL,
    assignee text NOT NULL DEFAULT '',
    answered_ms bigint NOT NULL DEFAULT 0,
    answer_sealed bytea NOT NULL DEFAULT ''::bytea
);
CREATE INDEX complaints_open_due ON complaints (due_ms) WHERE state <> 'answered';

CREATE TABLE recovery_orders (
    order_id bigint PRIMARY KEY,
    time_ms bigint NOT NULL,
    holder_token text NOT NULL,
    card text NOT NULL,
    amount_fen bigint NOT NULL,
    fine_fen bigint NOT NULL,
    evidence bigint[] NOT NULL,
    reference text NOT NULL,
    actor text NOT NULL
);
CREATE INDEX recovery_orders_holder ON recovery_orders (holder_token);

CREATE TABLE review_flags (
    flag_id bigint PRIMARY KEY,
    time_ms bigint NOT NULL,
    card text NOT NULL,
    rule text NOT NULL,
    evidence bigint[] NOT NULL,
    detail text NOT NULL,
    outcome text NOT NULL DEFAULT '',
    resolved_by text NOT NULL DEFAULT ''
);
