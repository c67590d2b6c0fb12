-- The latest progress a handler reported for its operation: {"value", "at", "attempt"}, or NULL.
--
-- Not an event and not part of the projection's fold: a report changes no state, a worker writes
-- only the latest one (at most once a second, fenced by the attempt's token, while it is
-- PROCESSING), and a rebuild from the events leaves it NULL. No index names it, so a report is a
-- HOT update of the row. Adding a column without a default changes only the catalog: the table's
-- lock is held for a moment, and processes of the release before it keep working (they neither
-- read nor write it).

ALTER TABLE operations ADD COLUMN progress jsonb;
