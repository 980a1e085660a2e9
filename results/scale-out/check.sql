-- After kill9.sh (results/scale-out.md): what the database holds of the run's devices.
-- records: one row per manufacturer identity (key = its certificate's fingerprint), JSON value
--   with device_id, identity_certificate (fingerprint) and the steps; written, with the identity,
--   before the credentials answer (2.04) is sent.
-- identities: one row per device id (primary key), holders = JSON array of who holds it.
\echo 'records (one per device that was answered 2.04 at least once):'
SELECT count(*) FROM records
 WHERE value::json->'steps'->'credentials'->>'code' = '2.04';
\echo 'records whose device id and identity certificate are held in identities by that record:'
SELECT count(*) FROM records r
 WHERE EXISTS (SELECT 1 FROM identities i, json_array_elements(i.holders::json) h
                WHERE i.device_id = r.value::json->>'device_id'
                  AND h->>'record' = r.key
                  AND h->>'certificate' = r.value::json->>'identity_certificate');
\echo 'device ids in two or more records (must be 0):'
SELECT count(*) FROM (SELECT value::json->>'device_id' FROM records
                       GROUP BY 1 HAVING count(*) > 1) d;
\echo 'device ids held by two or more manufacturer identities (must be 0):'
SELECT count(*) FROM identities
 WHERE (SELECT count(DISTINCT h->>'record') FROM json_array_elements(holders::json) h) <> 1;
\echo 'device ids issued but superseded (answer lost with the killed replica, device retried):'
SELECT count(*) FROM identities i
 WHERE NOT EXISTS (SELECT 1 FROM records r WHERE r.value::json->>'device_id' = i.device_id);
