-- Every transition writes a new version of its operations row with an entry in every index, so
-- each index on operations is paid on accept, start and finish. The two list-filter indexes cost
-- that for every operation to serve a list query now and then. Lists by state now use the indexes
-- the queue keeps anyway (PENDING, PROCESSING) or, for the common COMPLETED, walk acceptance order;
-- the rare end states keep an index of their own, written once per operation that ends there.
-- Lists by type walk acceptance order and filter.
DROP INDEX IF EXISTS operations_state_idx;
DROP INDEX IF EXISTS operations_type_idx;
CREATE INDEX operations_unsuccessful_idx ON operations (seq) WHERE state IN ('REJECTED', 'FAILED', 'CANCELLED');
