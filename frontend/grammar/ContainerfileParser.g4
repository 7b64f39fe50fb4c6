// Parser for one Containerfile instruction. The structure common to every instruction is here;
// each instruction's argument form (JSON or shell form, words, name=value pairs, a sub-instruction
// for ONBUILD) is decoded by instruction_parser.cpp, because BuildKit decides those forms by trying
// them in order (invalid JSON falls back to shell form), which a context-free rule cannot express.
parser grammar ContainerfileParser;

options { tokenVocab = ContainerfileLexer; }

instruction : keyword flag* END_OF_FLAGS? arguments? EOF ;

keyword
  : ADD | ARG | CMD | COPY | ENTRYPOINT | ENV | EXPOSE | FROM | HEALTHCHECK | LABEL | MAINTAINER
  | ONBUILD | RUN | SHELL | STOPSIGNAL | USER | VOLUME | WORKDIR
  | UNKNOWN_INSTRUCTION
  ;

flag : FLAG | UNTERMINATED_FLAG ;

arguments : ARGUMENTS_TEXT ;
