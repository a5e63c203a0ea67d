"""The installation as a whole: settings (`settings`), what the supervisor reports about
itself (`supervisor_report`), the engine record (`installation`), the status page
(`status`), notices by email and in the inbox (`notifications`, `inbox`), and keeping host
paths out of what deployers see (`host_paths`)."""
