int sdc__wire_placeholder;
