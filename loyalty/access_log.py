"""gunicorn's logger class with phone numbers masked (loyalty.log_masking): the Dockerfile and docker-compose.yml
start gunicorn with `--logger-class loyalty.access_log.GunicornLogger`, so an access-log line of
GET /api/v1/members/?phone=13800138000 reads ...?phone=138****8000. Imported by gunicorn before Django is set up."""

from gunicorn.glogging import Logger

from loyalty.log_masking import MaskPhones


class GunicornLogger(Logger):
    """The access log (the request line, query string, referrer and every other atom of the format) and the error
    log, with MaskPhones on both loggers."""

    def __init__(self, cfg):
        super().__init__(cfg)
        for logger in (self.access_log, self.error_log):
            if not any(isinstance(existing, MaskPhones) for existing in logger.filters):
                logger.addFilter(MaskPhones())
