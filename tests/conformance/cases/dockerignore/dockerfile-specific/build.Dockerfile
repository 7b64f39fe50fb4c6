FROM kbase
COPY . /ctx/
