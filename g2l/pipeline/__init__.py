"""Pipeline plumbing without kfp: step bodies, step I/O, pipeline config, TrainJobs, schedules, the plan."""
