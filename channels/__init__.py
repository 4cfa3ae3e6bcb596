# Every process that loads the project's channels or tracker store is a Rasa server: it checks
# action-server replies with a validator built once (see the module).
from channels import action_reply_validation  # noqa: F401
