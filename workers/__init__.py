"""The workers: Celery tasks that analyse media with a video-language model. Three rooms, each above the
last: `decode` (frames from files), `model` (loading and asking the model), `analysis` (one analysis run,
start to finish). The modules at this level (`app`, `tasks`, `delivery_tasks`, `__main__`) are the
Celery side's composition.

May import: vigil, workers.decode, workers.model, workers.analysis
"""
