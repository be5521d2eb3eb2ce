-- A journal as tilld wrote it before schema 2 (schema 1: canonical JSON text, hex
-- hashes, JSON expression indexes): a float, four sales (one with a ticket), a void,
-- a refund, two scans and a Z report, all unsynced. Made by today's daemon with
-- sqlite3's iterdump; tests/test_journal_schema1.py opens it with the current tilld.
BEGIN TRANSACTION;
CREATE TABLE card_counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE card_intents (
    payment_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL REFERENCES entries (seq),
    open INTEGER NOT NULL
);
CREATE TABLE catalog_cache (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    document TEXT NOT NULL,
    etag TEXT,
    source TEXT NOT NULL,
    stored_at TEXT NOT NULL
);
CREATE TABLE control_codes (
    sequence INTEGER PRIMARY KEY,
    receipt_no INTEGER NOT NULL,
    kind TEXT NOT NULL,
    request TEXT NOT NULL,
    state TEXT NOT NULL,
    control_code TEXT,
    unit_id TEXT,
    updated_at TEXT NOT NULL,
    UNIQUE (receipt_no, kind)
);
CREATE TABLE entries (
    seq INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO "entries" VALUES(1,'bc0fc37f-0a14-4c8c-9d97-d95c05d0e6a2','float','2026-11-27T15:49:39.255+00:00','{"amount":50000,"change":50000,"note":"start","previous":0}','0000000000000000000000000000000000000000000000000000000000000000','b6d1642b3c23498492c15a108391122c4050fc169e1327adfe437a6257b56814');
INSERT INTO "entries" VALUES(2,'0bcdf5d6-99c0-492c-8abf-239fbc68de84','sale','2026-11-27T15:49:39.271+00:00','{"lines":[{"amount":3500,"kind":"goods","line_id":1,"name":"Kaffe","plu":"300","quantity":1,"unit_price":3500,"vat_rate":12},{"amount":3000,"kind":"goods","line_id":2,"name":"Kanelbulle","plu":"301","quantity":1,"unit_price":3000,"vat_rate":12}],"mode":"no-internet","opened_at":"2026-11-27T15:49:39.260+00:00","payments":[{"amount":6500,"change":0,"method":"cash","payment_id":"ee16e1a3-da49-4a9e-998d-ebb3410af2dd","tendered":6500}],"receipt_no":1,"sale_id":"30ecb6ec-6280-4bdb-9bcd-d4966317798c","total":6500,"vat":[{"gross":6500,"net":5804,"rate":12,"vat":696}]}','b6d1642b3c23498492c15a108391122c4050fc169e1327adfe437a6257b56814','3e4464df7c1e4bb98a015708d3849d12a46695aef6ccd31a69204615f7f35e59');
INSERT INTO "entries" VALUES(3,'f340f1ef-dee1-4dc7-9f45-6ea23ea8da84','sale','2026-11-27T15:49:39.283+00:00','{"lines":[{"amount":15000,"kind":"ticket","line_id":1,"name":"Entré vuxen","plu":"100","quantity":1,"ticket_codes":["TKPFZBUIVO1AHS"],"unit_price":15000,"vat_rate":6},{"amount":1500,"kind":"goods","line_id":2,"name":"Vykort Östersjön","plu":"400","quantity":1,"unit_price":1500,"vat_rate":25}],"mode":"no-internet","opened_at":"2026-11-27T15:49:39.278+00:00","payments":[{"amount":16500,"change":0,"method":"cash","payment_id":"dc2bbcd1-9249-4fde-90d7-b1d817c512b5","tendered":16500}],"receipt_no":2,"sale_id":"536f57de-bdcc-4fa3-936e-57b135ff6b63","total":16500,"vat":[{"gross":1500,"net":1200,"rate":25,"vat":300},{"gross":15000,"net":14151,"rate":6,"vat":849}]}','3e4464df7c1e4bb98a015708d3849d12a46695aef6ccd31a69204615f7f35e59','2785081e1c4fdc77d16ea5c59a99b3f9bb9742079f7b602c326d80e479f32fe8');
INSERT INTO "entries" VALUES(4,'fddc1d4c-1741-4b69-b445-f65bedc78b87','sale','2026-11-27T15:49:39.299+00:00','{"lines":[{"amount":6500,"kind":"goods","line_id":1,"name":"Ostsmörgås","plu":"302","quantity":1,"unit_price":6500,"vat_rate":12}],"mode":"no-internet","opened_at":"2026-11-27T15:49:39.287+00:00","payments":[{"amount":6500,"change":0,"method":"cash","payment_id":"a338f0ac-39f3-46a4-a862-6b96b6aba572","tendered":6500}],"receipt_no":3,"sale_id":"73ee23ff-88c4-4ae0-b57f-1232be775b1d","total":6500,"vat":[{"gross":6500,"net":5804,"rate":12,"vat":696}]}','2785081e1c4fdc77d16ea5c59a99b3f9bb9742079f7b602c326d80e479f32fe8','0bb3d7d06f2a7ff05336cd53aef48282809aa6ad4926f9ab922ba8d3ab8c48ef');
INSERT INTO "entries" VALUES(5,'c3c92acf-aaed-4c57-abf9-b6ae410a7334','void','2026-11-27T15:49:39.316+00:00','{"lines":[{"amount":9900,"kind":"goods","line_id":1,"name":"Tygkasse","plu":"402","quantity":1,"unit_price":9900,"vat_rate":25}],"mode":"no-internet","opened_at":"2026-11-27T15:49:39.314+00:00","payments_returned":[],"reason":"fel vara","sale_id":"019f5ee6-13c7-4aae-9efd-305924a2dd09","total":9900}','0bb3d7d06f2a7ff05336cd53aef48282809aa6ad4926f9ab922ba8d3ab8c48ef','f8cba62b2ee0057b16db23ad588bffae9c01b9d3eedefaaef08078d6e17ef243');
INSERT INTO "entries" VALUES(6,'3da08208-6b2e-4691-9774-8dcd9ce95e0b','refund','2026-11-27T15:49:39.325+00:00','{"lines":[{"amount":3500,"kind":"goods","line_id":1,"name":"Kaffe","plu":"300","quantity":1,"unit_price":3500,"vat_rate":12},{"amount":3000,"kind":"goods","line_id":2,"name":"Kanelbulle","plu":"301","quantity":1,"unit_price":3000,"vat_rate":12}],"mode":"no-internet","original_receipt_no":1,"original_sale_id":"30ecb6ec-6280-4bdb-9bcd-d4966317798c","payments":[{"amount":6500,"method":"cash"}],"reason":"ångrat","receipt_no":4,"total":6500,"vat":[{"gross":6500,"net":5804,"rate":12,"vat":696}]}','f8cba62b2ee0057b16db23ad588bffae9c01b9d3eedefaaef08078d6e17ef243','e4215fde7d63bc27f85348b0fc2b72bcf904bafa7592e2731c248b6cc4372576');
INSERT INTO "entries" VALUES(7,'c873c2bf-85fc-4cf4-b087-fc9e1eb8d27b','scan','2026-11-27T15:49:40.135+00:00','{"code":"TKPFZBUIVO1AHS","local_check":"sold-here","mode":"no-internet","scanned_at":"2026-11-27T15:49:40.134+00:00","source":"api"}','e4215fde7d63bc27f85348b0fc2b72bcf904bafa7592e2731c248b6cc4372576','e118fb685d611cac996a0dc54f9e79245f804be1c58571f946a342aef71327b0');
INSERT INTO "entries" VALUES(8,'f38a8280-d10c-40dd-8ea7-635463e56ba1','scan','2026-11-27T15:49:40.153+00:00','{"code":"TKUNKNOWN0001","local_check":"not-known-locally","mode":"no-internet","scanned_at":"2026-11-27T15:49:40.153+00:00","source":"api"}','e118fb685d611cac996a0dc54f9e79245f804be1c58571f946a342aef71327b0','e6755f97a4188882ed3c6e182021886c541a1f2d659feef8e3c313760a03f540');
INSERT INTO "entries" VALUES(9,'24a52a95-f3e8-4b5f-b7cc-f1459af14f33','z-report','2026-11-27T15:49:40.155+00:00','{"control_unit":null,"copies":{"amount":0,"count":0},"discounts":{"amount":0,"count":0},"drawer_openings_without_sale":0,"first_receipt_no":1,"float":{"end":50000,"start":0},"float_changes":[{"amount":50000,"at":"2026-11-27T15:49:39.255+00:00","change":50000}],"grand_total":23000,"grand_total_refunds":6500,"grand_total_sales":29500,"gross_refunds":6500,"gross_sales":29500,"kind":"z","last_receipt_no":4,"net":23000,"org_number":"","payments":{"cash":23000},"period_end":"2026-11-27T15:49:39.325+00:00","period_start":"2026-11-27T15:49:39.271+00:00","price_changes":0,"printed_at":"2026-11-27T15:49:40.154+00:00","receipts":4,"refunds":1,"sales":3,"seller":"tilld demo venue","terminal":{"closed":false,"why":"no card terminal is configured"},"tickets":1,"till_id":"till-test","training_amount":0,"training_receipts":0,"vat":[{"gross":1500,"net":1200,"rate":25,"vat":300},{"gross":6500,"net":5804,"rate":12,"vat":696},{"gross":15000,"net":14151,"rate":6,"vat":849}],"voids":1,"z_no":1}','e6755f97a4188882ed3c6e182021886c541a1f2d659feef8e3c313760a03f540','6aacf8f96885e0edbd08b2ba3ca85eb3278e90886864bb199e0ad55d070ca252');
INSERT INTO "entries" VALUES(10,'59bc1469-0735-4f8d-80f2-861f8a548be2','sale','2026-11-27T15:49:40.158+00:00','{"lines":[{"amount":24900,"kind":"goods","line_id":1,"name":"Utställningskatalog","plu":"401","quantity":1,"unit_price":24900,"vat_rate":6}],"mode":"no-internet","opened_at":"2026-11-27T15:49:40.157+00:00","payments":[{"amount":24900,"change":0,"method":"cash","payment_id":"72a0fc5d-c6ab-4fef-b7fb-4895ff8490ca","tendered":24900}],"receipt_no":5,"sale_id":"dfba609b-35b4-4e66-8092-7354f9f4d1a7","total":24900,"vat":[{"gross":24900,"net":23491,"rate":6,"vat":1409}]}','6aacf8f96885e0edbd08b2ba3ca85eb3278e90886864bb199e0ad55d070ca252','5a86797a6e75666acdaa13a6b326942e2f0a3aa5dbc2c129c2ac62acba01f86b');
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "meta" VALUES('till_id','till-test');
INSERT INTO "meta" VALUES('schema_version','1');
CREATE TABLE open_sales (
    sale_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE print_jobs (
    job_id TEXT PRIMARY KEY,
    receipt_no INTEGER NOT NULL,
    copy INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL
);
CREATE TABLE scan_results (
    seq INTEGER PRIMARY KEY REFERENCES entries (seq),
    status TEXT NOT NULL,
    detail TEXT,
    at TEXT NOT NULL
);
CREATE TABLE sync_results (
    seq INTEGER PRIMARY KEY REFERENCES entries (seq),
    status TEXT NOT NULL,
    reason TEXT,
    at TEXT NOT NULL
);
CREATE TABLE tickets (
    code TEXT PRIMARY KEY,
    seq INTEGER NOT NULL REFERENCES entries (seq),
    receipt_no INTEGER NOT NULL,
    plu TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL
);
INSERT INTO "tickets" VALUES('TKPFZBUIVO1AHS',3,2,'100','Entré vuxen','pending','2026-11-27T15:49:39.283+00:00');
CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'journal entries are append-only'); END;
CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'journal entries are append-only'); END;
CREATE INDEX entries_receipt_no ON entries (json_extract(body, '$.receipt_no'))
    WHERE type IN ('sale', 'refund');
CREATE INDEX entries_z_no ON entries (json_extract(body, '$.z_no'))
    WHERE type IN ('z-report');
CREATE INDEX entries_refund_of
    ON entries (json_extract(body, '$.original_receipt_no')) WHERE type = 'refund';
CREATE INDEX entries_sale_id ON entries (json_extract(body, '$.sale_id'))
    WHERE type IN ('sale', 'void');
CREATE INDEX entries_type ON entries (type, seq);
CREATE INDEX sync_results_rejected ON sync_results (status)
    WHERE status = 'rejected';
CREATE INDEX entries_scan_code ON entries (json_extract(body, '$.code'))
    WHERE type = 'scan';
CREATE INDEX tickets_state ON tickets (state);
CREATE INDEX tickets_seq ON tickets (seq);
CREATE INDEX print_jobs_receipt ON print_jobs (receipt_no);
CREATE INDEX card_intents_open ON card_intents (open) WHERE open = 1;
CREATE INDEX control_codes_state ON control_codes (state)
    WHERE state != 'registered';
COMMIT;
