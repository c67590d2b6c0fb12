-- A claim finds every row it reads through an index, whatever the planner believes of the table's
-- size.
--
-- A new store starts with an empty `operations` table, and each worker's session plans the claim's
-- statements then. After five calls PostgreSQL keeps one plan per statement for the session, made
-- for a table it takes to be ten pages (its floor for a table never vacuumed), until the table is
-- first analyzed: autovacuum comes to it within a minute or so. In that plan the join that locks
-- the picked heads found each one by reading the table from its start, stopping at the row: past
-- the operations already done, for every operation started. In the benchmark's end-to-end runs
-- (api + worker, PostgreSQL alone, 500 operations a second from an empty store), a claim of 45 read
-- 20,243 pages and took 21 ms, claims took up to 87 ms, and the median latency of one run in three
-- went from 8 to 94 ms.
--
-- With sequential scans priced out, the planner keeps the index paths it already has for every
-- statement of the claim. A statement that no index serves would still scan; none does. A
-- restatement of opsd_claim must carry this setting along with enable_sort and jit.

ALTER FUNCTION opsd_claim(timestamptz, integer, text[], text[], text, timestamptz, text, integer) SET enable_seqscan = off;
