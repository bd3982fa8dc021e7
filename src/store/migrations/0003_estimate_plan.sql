-- 0003: keep the whole priced plan (line items, slots, uncertain findings) and the customer-facing
-- explanation with each estimate version, so a tablet shows exactly what was offered.
ALTER TABLE estimates ADD COLUMN plan TEXT;
ALTER TABLE estimates ADD COLUMN explanation TEXT;
ALTER TABLE estimates ADD COLUMN explanation_from_llm INTEGER NOT NULL DEFAULT 0;
