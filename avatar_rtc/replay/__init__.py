"""The replay tool: play audio to a server over WebRTC like a caller, or run a recorded
call through the pipeline offline, and write a timeline, a summary and a report."""
